"""The `maskkit` command: one typer app; each command lives in its own module."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Masked-autoencoder pretraining across modalities, with pluggable maskers.")

COMMAND_MODULES = ["train", "evaluate", "visualize", "listing", "bench", "analyze", "compare", "check", "data",
                   "finetune", "export"]

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"maskkit.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"maskkit.cli.{_name}":
            raise
        continue
    _module.register(app)


def spell_resume_auto(argv: list[str]) -> list[str]:
    """``--resume auto`` and ``--resume=auto`` (how requeue scripts say it) mean ``--resume-auto``: a typer
    option cannot take an optional value, so the plain ``--resume`` flag stays a flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--resume=auto" or (argv[i] == "--resume" and argv[i + 1:i + 2] == ["auto"]):
            out.append("--resume-auto")
            i += 1 if "=" in argv[i] else 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main() -> None:
    app(args=spell_resume_auto(sys.argv[1:]))


if __name__ == "__main__":
    main()
