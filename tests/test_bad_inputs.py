"""The bad-input table of docs/reliability.md: every row is run here and must give exit code 2 and one
``error:`` line that contains the documented words, never a traceback.

``python tests/test_bad_inputs.py`` prints the table (with the actual messages) for the docs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.train.rundir import owned

runner = CliRunner()
TOY = ["--modality", "toy", "--model", "nano", "--batch-size", "16", "--no-progress"]


def make_run(root: Path) -> Path:
    """A finished 2-epoch toy run with epoch_0001.pt, epoch_0002.pt and last.pt."""
    out = root / "toy-run"
    result = runner.invoke(app, ["train", *TOY, "--epochs", "2", "--save-every", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def copy_run(run: Path, root: Path, name: str) -> Path:
    import shutil

    target = root / name
    shutil.copytree(run, target)
    return target


def flip(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return path


def folder(root: Path, name: str, files: dict[str, bytes | np.ndarray]) -> str:
    d = root / name
    for rel, content in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, np.ndarray):
            np.save(p, content)
        else:
            p.write_bytes(content)
    return str(d)


def all_damaged(run: Path, root: Path) -> str:
    copy = copy_run(run, root, "all-damaged")
    for p in (copy / "checkpoints").glob("*.pt"):
        flip(p)
    return str(copy)


def foreign(root: Path) -> str:
    torch.save({"weights": torch.zeros(2)}, root / "foreign.pt")
    return str(root / "foreign.pt")


def toml(root: Path, text: str) -> str:
    path = root / "run.toml"
    path.write_text(text)
    return str(path)


def truncated_config(run: Path, root: Path) -> str:
    copy = copy_run(run, root, "truncated-config")
    text = (copy / "config.json").read_text()
    (copy / "config.json").write_text(text[: len(text) // 2])
    return str(copy)


def pickled(root: Path) -> str:
    from fractions import Fraction

    torch.save({"format": "maskkit-checkpoint", "version": 1, "model": {}, "config": {}, "x": Fraction(1, 2)},
               root / "pickled.pt")
    return str(root / "pickled.pt")


def a_file(root: Path) -> str:
    (root / "taken").write_text("mine")
    return str(root / "taken")


Case = tuple[str, str, str, Callable[[Path, Path], list[str]], str]
#: (command, modality, bad input, argv builder (tmp dir, finished toy run) -> argv, words in the error)
CASES: list[Case] = [
    ("train", "image", "a text file named .png in the data folder",
     lambda t, r: ["train", "--modality", "image", "--data", folder(t, "img", {"a/broken.png": b"not an image"})],
     "broken.png"),
    ("train", "image", "image size not divisible by the patch size",
     lambda t, r: ["train", "--modality", "image", "--image-size", "30", "--patch-size", "4"], "not divisible"),
    ("train", "video", "a text file named .mp4",
     lambda t, r: ["train", "--modality", "video", "--data", folder(t, "vid", {"a/clip.mp4": b"not a video"})],
     "clip.mp4"),
    ("train", "video", "frames not divisible by the tubelet length",
     lambda t, r: ["train", "--modality", "video", "--num-frames", "15"], "not divisible by tubelet_size 2"),
    ("train", "audio", "an empty .wav file",
     lambda t, r: ["train", "--modality", "audio", "--data", folder(t, "wav", {"a/empty.wav": b""})], "empty.wav"),
    ("train", "audio", "a patch that does not tile the spectrogram",
     lambda t, r: ["train", "--modality", "audio", "--patch-size", "10x8"], "not divisible by --patch-size 10x8"),
    ("train", "pointcloud", "a point file full of NaN",
     lambda t, r: ["train", "--modality", "pointcloud", "--data",
                   folder(t, "pts", {"a/broken.npy": np.full((40, 3), np.nan)})], "broken.npy"),
    ("train", "pointcloud", "an image option",
     lambda t, r: ["train", "--modality", "pointcloud", "--image-size", "16"],
     "does not apply to modality 'pointcloud'"),
    ("train", "any", "mask ratio outside (0, 1)", lambda t, r: ["train", *TOY, "--mask-ratio", "1.2"],
     "--mask-ratio must be in (0, 1)"),
    ("train", "any", "--out of a run that another process is training",
     lambda t, r: ["train", *TOY, "--out", str(t / "busy")], "is in use by maskkit train"),
    ("train", "any", "--out of a finished run, without --resume or --overwrite",
     lambda t, r: ["train", *TOY, "--out", str(r)], "already holds a run"),
    ("train", "any", "--resume where nothing was saved",
     lambda t, r: ["train", *TOY, "--resume", "--out", str(t / "empty")], "nothing to resume"),
    ("train", "any", "--resume with another mask ratio, without --allow-config-change",
     lambda t, r: ["train", "--resume", "--mask-ratio", "0.5", "--out", str(r)], "--allow-config-change"),
    ("train", "any", "--resume with another patch size (even with --allow-config-change)",
     lambda t, r: ["train", "--resume", "--patch-size", "4", "--allow-config-change", "--out", str(r)],
     "cannot change patch_size 2 -> 4"),
    ("train", "any", "--resume together with --overwrite",
     lambda t, r: ["train", "--resume", "--overwrite", "--out", str(r)], "contradict each other"),
    ("train", "any", "--resume when every checkpoint is damaged",
     lambda t, r: ["train", "--resume", "--out", all_damaged(r, t)], "no intact checkpoint"),
    ("eval", "any", "a path that does not exist",
     lambda t, r: ["eval", str(t / "nowhere")], "no such checkpoint"),
    ("eval", "any", "a damaged checkpoint file named explicitly",
     lambda t, r: ["eval", str(flip(copy_run(r, t, "flipped") / "checkpoints" / "last.pt"))],
     "checkpoint is damaged (checksum mismatch"),
    ("eval", "any", "a torch file that is not a maskkit checkpoint",
     lambda t, r: ["eval", foreign(t)], "not a maskkit checkpoint"),
    ("visualize", "any", "a run whose checkpoints are all damaged",
     lambda t, r: ["visualize", all_damaged(r, t)], "no intact checkpoint"),
    ("analyze", "any", "an unknown --checkpoints value",
     lambda t, r: ["analyze", str(r), "--checkpoints", "some"], "--checkpoints must be last or all"),
    ("compare", "any", "an unknown masker",
     lambda t, r: ["compare", "--modality", "toy", "--maskers", "random,nope", "--out", str(t / "s")],
     "unknown masker 'nope'"),
    ("compare", "any", "--out of a study that another process is running",
     lambda t, r: ["compare", "--modality", "toy", "--maskers", "random", "--seeds", "1", "--epochs", "1",
                   "--no-progress", "--out", str(t / "busy")], "is in use by maskkit compare"),
    ("check", "any", "a directory that does not exist",
     lambda t, r: ["check", str(t / "nowhere")], "no such run or study directory"),
    ("check", "any", "a directory that is neither a run nor a study",
     lambda t, r: ["check", folder(t, "plain", {"notes.txt": b"x"})], "not a run directory"),
    ("train", "any", "--out is the --data folder",
     lambda t, r: ["train", *TOY, "--data", str(t / "dd"), "--out", str(t / "dd")], "is the --data folder"),
    ("train", "any", "a negative --clip-grad (would reverse the gradient)",
     lambda t, r: ["train", *TOY, "--clip-grad", "-1"], "--clip-grad must be > 0"),
    ("train", "any", "a negative --weight-decay", lambda t, r: ["train", *TOY, "--weight-decay", "-0.1"],
     "--weight-decay must be >= 0"),
    ("train", "any", "--min-lr above --lr", lambda t, r: ["train", *TOY, "--lr", "1e-4", "--min-lr", "1e-3"],
     "above the peak learning rate"),
    ("train", "any", "TOML `betas = [0.9]`", lambda t, r: ["train", *TOY, "--config", toml(t, "betas = [0.9]\n")],
     "betas must be two numbers in [0, 1)"),
    ("train", "any", "a batch larger than the data set", lambda t, r: ["train", *TOY, "--batch-size", "1000000000"],
     "--batch-size 1000000000 is larger than the"),
    ("train", "image", "`--image-size 1000000`",
     lambda t, r: ["train", "--modality", "image", "--image-size", "1000000"], "tokens per image"),
    ("train", "pointcloud", "a coordinate beyond float32 (1e39)",
     lambda t, r: ["train", "--modality", "pointcloud", "--data",
                   folder(t, "huge", {"a/huge.npy": np.full((40, 3), 1e39)})], "beyond float32's range"),
    ("train", "image", "a shard brace range of millions",
     lambda t, r: ["train", "--modality", "image", "--data", str(t / "x-{0000000..2999999}.tar")], "more than 100000"),
    ("train", "any", "--resume of a finished run", lambda t, r: ["train", "--resume", "--out", str(r)],
     "already finished its 2 epochs"),
    ("train", "any", "--resume with a truncated config.json",
     lambda t, r: ["train", "--resume", "--out", truncated_config(r, t)], "config.json: not a readable run config"),
    ("export", "any", "--out the run's own folder", lambda t, r: ["export", str(r), "--out", str(r)],
     "is the folder of a run or study"),
    ("export", "any", "--out an existing file", lambda t, r: ["export", str(r), "--out", a_file(t)],
     "exists and is not a folder"),
    ("eval", "any", "--k 0", lambda t, r: ["eval", str(r), "--k", "0", "--max-samples", "40"], "--k must be >= 1"),
    ("eval", "any", "a checkpoint holding pickled objects", lambda t, r: ["eval", pickled(t)],
     "could run code when loaded"),
    ("compare", "any", "--out is the --data folder",
     lambda t, r: ["compare", "--modality", "toy", "--maskers", "random", "--data", str(t / "dd"),
                   "--out", str(t / "dd")], "is the --data folder"),
    ("data shard", "image", "--out a folder that already holds files",
     lambda t, r: ["data", "shard", folder(t, "pngs", {"a/x.png": b"x"}), "--out", folder(t, "used", {"0.tar": b"x"})],
     "is not empty"),
]


def run_case(case: Case, tmp: Path, run: Path) -> tuple[int, list[str], str]:
    argv = case[3](tmp, run)
    with owned(tmp / "busy", case[0]):  # the "another process" of the lock rows
        result = runner.invoke(app, argv)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    return result.exit_code, errors, result.output


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("bad-inputs"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_gets_one_line_and_exit_2(case, toy_run, tmp_path):
    before = json.loads((toy_run / "config.json").read_text())
    code, errors, output = run_case(case, tmp_path, toy_run)
    assert code == 2, output
    assert len(errors) == 1 and case[4] in errors[0], output
    assert "Traceback" not in output
    assert json.loads((toy_run / "config.json").read_text()) == before  # a refused command changes no run


def print_table() -> None:
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    import toy  # noqa: F401  (registers the toy modality)

    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp))
        print("| command | modality | bad input | exit | message |")
        print("|---|---|---|---|---|")
        for i, case in enumerate(CASES):
            case_dir = Path(tmp) / f"case{i}"
            case_dir.mkdir()
            code, errors, _ = run_case(case, case_dir, run)
            message = errors[0].replace(tmp, "…").replace("|", "\\|") if errors else "(none)"
            print(f"| `{case[0]}` | {case[1]} | {case[2]} | {code} | `{message}` |")


if __name__ == "__main__":
    print_table()
