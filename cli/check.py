"""`maskkit check`: the state of every checkpoint of a run (or of every run of a study), and its lock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from maskkit.cli.errors import handle_errors
from maskkit.safe_io import write_text


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def checkpoint_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One row per checkpoint file (newest first) and per leftover temp file."""
    from maskkit.train.checkpoint import CheckpointError, load_checkpoint
    from maskkit.train.integrity import candidates_newest_first, verify

    rows = []
    for path in candidates_newest_first(run_dir):
        status = verify(path)
        if status.state == "unverified":  # no record to read the position from: load the file
            try:
                pos = load_checkpoint(path, verify_checksum=False).get("position", {})
                status.epoch, status.step = pos.get("epoch"), pos.get("global_step")
            except CheckpointError as exc:
                status.state, status.reason = "damaged", str(exc).split(": ", 1)[-1]
        rows.append(status.to_dict())
    for tmp in sorted((run_dir / "checkpoints").glob("*.tmp")):
        rows.append({"file": str(tmp), "state": "leftover", "size": tmp.stat().st_size, "epoch": None,
                     "step": None, "reason": "temp file of an interrupted write; safe to delete"})
    return rows


def inspect(target: Path) -> dict[str, Any]:
    """{lock, runs: [{run, lock, checkpoints}]} for a run directory or a study directory."""
    from maskkit.errors import CheckpointError, ConfigError
    from maskkit.train.rundir import lock_state

    if not target.is_dir():
        raise CheckpointError(f"{target}: no such run or study directory")
    if (target / "checkpoints").is_dir():
        runs = [target]
    elif (target / "study.json").is_file() or (target / "runs").is_dir():
        runs = sorted(d for d in (target / "runs").glob("*") if (d / "checkpoints").is_dir())
    else:
        raise ConfigError(f"{target}: not a run directory (no checkpoints/) nor a study (no study.json)")
    lock = lock_state(target)
    report: dict[str, Any] = {"path": str(target), "lock": lock.state, "lock_detail": lock.describe(),
                              "holder": lock.holder, "runs": []}
    for run in runs:
        run_lock = lock_state(run)
        report["runs"].append({"run": str(run), "lock": run_lock.state, "lock_detail": run_lock.describe(),
                               "checkpoints": checkpoint_rows(run)})
    return report


@handle_errors
def check(
    run: Annotated[Path, typer.Argument(help="Run directory (or study directory: every run in it)")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here")] = None,
) -> None:
    """Verify every checkpoint's checksum (ok / damaged and why / unverified), with its epoch, step and
    size, and say whether a process owns the directory. Exit code 1 when a checkpoint is damaged."""
    from rich.console import Console
    from rich.table import Table

    report = inspect(run)
    console = Console()
    console.print(f"{report['path']}: lock {report['lock_detail']}", highlight=False)
    damaged = 0
    for entry in report["runs"]:
        table = Table(title=f"{entry['run']} (lock {entry['lock_detail']})")
        for col in ("file", "state", "epoch", "step", "size (bytes)", "detail"):
            table.add_column(col)
        for row in entry["checkpoints"]:
            damaged += row["state"] == "damaged"
            colour = {"ok": "green", "damaged": "red"}.get(row["state"], "yellow")
            table.add_row(Path(row["file"]).name, f"[{colour}]{row['state']}[/]",
                          "" if row["epoch"] is None else str(row["epoch"]),
                          "" if row["step"] is None else str(row["step"]), f"{row['size']:,}", row["reason"])
        if not entry["checkpoints"]:
            table.add_row("(none)", "", "", "", "", "no checkpoint written yet")
        console.print(table)
    if json_out is not None:
        write_text(json_out, json.dumps(report, indent=2, default=str))
    if damaged:
        console.print(f"[red]{damaged} damaged checkpoint(s)[/]: --resume and eval skip them and use the "
                      f"newest intact one")
        raise typer.Exit(1)
