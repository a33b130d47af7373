"""Library messages name settings, never the CLI's flags; the CLI turns only maskkit's own errors into one
line (anything else is a bug and keeps its traceback)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer

from maskkit.cli.errors import handle_errors
from maskkit.errors import CheckpointError, ConfigError, DataError, MaskkitError

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def test_no_string_below_the_cli_names_a_flag():
    hits = []
    for path in sorted([*(ROOT / "maskkit").rglob("*.py"), *(ROOT / "modalities").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and FLAG.search(node.value):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {FLAG.search(node.value).group()}")
    assert hits == []


def test_every_user_error_is_a_maskkit_error_and_still_a_value_error():
    from maskkit.config_utils import ConfigError as OldConfigError
    from maskkit.lab.evaluate import EvaluationError
    from maskkit.modality import DataError as OldDataError
    from maskkit.registry import RegistryError
    from maskkit.train.checkpoint import CheckpointError as OldCheckpointError
    from maskkit.train.rundir import DirectoryBusy

    assert (OldConfigError, OldDataError, OldCheckpointError) == (ConfigError, DataError, CheckpointError)
    for cls in (ConfigError, DataError, CheckpointError, RegistryError, EvaluationError, DirectoryBusy):
        assert issubclass(cls, MaskkitError) and issubclass(cls, ValueError), cls


def test_the_cli_prints_maskkit_errors_and_lets_bugs_through(capsys):
    @handle_errors
    def refuses() -> None:
        raise ConfigError("`epochs` must be >= 1, got 0\nsecond line")

    @handle_errors
    def has_a_bug() -> None:
        raise ValueError("not a user error")

    with pytest.raises(typer.Exit) as info:
        refuses()
    assert info.value.exit_code == 2
    assert capsys.readouterr().err == "error: epochs must be >= 1, got 0\n"
    with pytest.raises(ValueError, match="not a user error"):
        has_a_bug()


def test_options_settings_read_as_their_opt_flags():
    from typer.testing import CliRunner

    app = typer.Typer()

    @app.command()
    @handle_errors
    def train(modality_opt: list[str] | None = None, mask_ratio: float = 0.75) -> None:
        raise ConfigError("`modality_options` image_size=4 does not fit; `mask_ratio` 2 is out of range")

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    assert "error: --modality-opt image_size=4 does not fit; --mask-ratio 2 is out of range" in result.output


def test_no_function_over_80_lines():
    """Every function reads in one screen: at most 80 lines, signature included, in the library
    (`maskkit/`, `modalities/`). A typer command's signature is its option list, so in `cli/` only
    the body counts (first statement, docstring included, to the end)."""
    long = []
    for top in ("maskkit", "modalities", "cli"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    first = node.body[0].lineno if top == "cli" else node.lineno
                    lines = node.end_lineno - first + 1
                    if lines > 80:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_the_trainer_reads_in_one_sitting():
    trainer = ROOT / "maskkit" / "train" / "trainer.py"
    assert len(trainer.read_text().splitlines()) < 300
    tree = ast.parse(trainer.read_text())
    epoch = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "train_epoch")
    assert epoch.end_lineno - epoch.lineno + 1 <= 60


def test_pretraining_and_finetuning_share_one_loop_skeleton():
    """Signals, progress, per-epoch checkpoints and save-then-stop live in train.loop only."""
    from maskkit.lab.finetune.trainer import FinetuneInterrupted, FinetuneTrainer
    from maskkit.train.loop import EpochLoop, TrainingInterrupted
    from maskkit.train.trainer import Trainer

    assert issubclass(Trainer, EpochLoop) and issubclass(FinetuneTrainer, EpochLoop)
    assert issubclass(FinetuneInterrupted, TrainingInterrupted)
    for path in (ROOT / "maskkit" / "train" / "trainer.py", ROOT / "maskkit" / "lab" / "finetune" / "trainer.py"):
        text = path.read_text()
        for own_copy in ("catch_stop_signals", "TrainProgressBar(", "interrupt_exit_code", "perf_counter"):
            assert own_copy not in text, f"{path.name} has its own {own_copy}"
