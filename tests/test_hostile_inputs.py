"""Hostile and careless inputs, second round: nothing outside the run is written, nothing trains
silently wrong, checkpoints survive kills at every step of a save and a full disk (toy modality)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.modality import DataError
from maskkit.records import ShardChecker, label_array, read_row_file
from maskkit.safe_io import UnsafePath, append_text, write_text
from maskkit.train import checkpoint as ck
from maskkit.train.checkpoint import newest_intact
from maskkit.train.integrity import record_path, verify

runner = CliRunner()
TOY = ["--modality", "toy", "--model", "nano", "--batch-size", "16", "--no-progress", "--max-steps-per-epoch", "2"]


def errors_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def snapshot(root) -> dict[str, str]:
    """Every file under ``root`` (links as their target) -> its SHA-256: byte-identical means equal."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                out[p] = "link:" + os.readlink(p)
            else:
                with open(p, "rb") as fh:
                    out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2-epoch toy run (2 steps an epoch) with epoch_0001.pt, epoch_0002.pt and last.pt."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    result = runner.invoke(app, ["train", *TOY, "--epochs", "2", "--save-every", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy, symlinks=True)
    return copy


# --------------------------------------------------------------------------- 1. planted links
@pytest.mark.parametrize("planted", [".maskkit.lock", ".write-test", "checkpoints/last.pt.tmp"])
def test_a_planted_link_is_refused_and_its_target_untouched(run, tmp_path, planted):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (run / planted).symlink_to(victim)
    last = (run / "checkpoints" / "last.pt").read_bytes()
    result = runner.invoke(app, ["train", "--resume", "--epochs", "3", "--allow-config-change", "--out", str(run)])
    assert result.exit_code == 2, result.output
    errors = errors_of(result.output)
    assert len(errors) == 1 and planted.split("/")[-1] in errors[0] and "symbolic link" in errors[0], result.output
    assert "Traceback" not in result.output
    assert victim.read_bytes() == b"precious\n"
    assert (run / "checkpoints" / "last.pt").read_bytes() == last and not (run / "checkpoints/last.pt").is_symlink()


def test_safe_writers_refuse_links_and_never_write_through_a_hard_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "soft.json").symlink_to(victim)
    os.link(victim, tmp_path / "hard.json")
    os.link(victim, tmp_path / "metrics.jsonl")
    with pytest.raises(UnsafePath, match="soft.json is a symbolic link"):
        write_text(tmp_path / "soft.json", "{}")
    with pytest.raises(UnsafePath, match="metrics.jsonl is a hard link"):  # appended in place: refused
        append_text(tmp_path / "metrics.jsonl", "{}\n")
    write_text(tmp_path / "hard.json", "new")  # renamed over: the name gets a new file of its own
    assert victim.read_text() == "keep" and (tmp_path / "hard.json").read_text() == "new"
    write_text(tmp_path / "plain.json", "1")
    write_text(tmp_path / "plain.json", "2")
    assert (tmp_path / "plain.json").read_text() == "2" and sorted(os.listdir(tmp_path)) == [
        "hard.json", "metrics.jsonl", "plain.json", "soft.json", "victim"]  # no temp file left


# --------------------------------------------------------------------------- 2. --out vs data and cwd
def test_out_above_the_working_directory_is_refused_before_anything_moves(run, tmp_path, monkeypatch):
    before = snapshot(tmp_path)
    monkeypatch.chdir(run)
    result = runner.invoke(app, ["train", *TOY, "--out", "..", "--overwrite"])
    assert result.exit_code == 2 and "working directory" in errors_of(result.output)[0], result.output
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- 4. shards into a used folder
def test_shard_into_a_non_empty_folder_needs_overwrite_which_removes_the_old_shards(tmp_path):
    for name, count in (("a", 6), ("b", 3)):
        for c in ("x", "y"):
            (tmp_path / name / c).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((4, 4), i * 9, np.uint8)).save(tmp_path / name / c / f"{i}.png")
    args = ["data", "shard", "--max-count", "2", "--out", str(tmp_path / "s")]
    assert runner.invoke(app, [*args[:2], str(tmp_path / "a"), *args[2:]]).exit_code == 0
    assert len(list((tmp_path / "s").glob("*.tar"))) == 6
    before = snapshot(tmp_path / "s")
    refused = runner.invoke(app, [*args[:2], str(tmp_path / "b"), *args[2:]])
    assert refused.exit_code == 2 and "is not empty" in errors_of(refused.output)[0], refused.output
    assert snapshot(tmp_path / "s") == before
    replaced = runner.invoke(app, [*args[:2], str(tmp_path / "b"), *args[2:], "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [f"shard-{i:06d}.tar" for i in range(3)]
    inside = runner.invoke(app, [*args[:2], str(tmp_path / "b"), "--out", str(tmp_path / "b" / "s")])
    assert inside.exit_code == 2 and "is inside the data folder" in errors_of(inside.output)[0], inside.output
    assert not (tmp_path / "b" / "s").exists()


# --------------------------------------------------------------------------- 5. hf: rows and tar headers
def test_hf_row_paths_stay_in_the_data_set_and_are_bounded(tmp_path):
    root = tmp_path / "ds"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(b"png bytes")
    os.mkfifo(root / "img" / "pipe")
    assert read_row_file(root, "img/a.png") == b"png bytes"  # relative to the data set, not the cwd
    for name, words in (("/dev/zero", "outside"), ("../../etc/passwd", "outside"), ("img/pipe", "not a regular"),
                        ("img/none.png", "cannot read")):
        with pytest.raises(DataError, match=words):
            read_row_file(root, name)
    assert label_array([1, None, 0]).tolist() == [1, -1, 0]


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_truncated_shard_is_named_not_shortened(tmp_path):
    data = _tar({"0.png": b"a" * 600, "0.cls": b"0", "1.png": b"b" * 5000, "1.cls": b"1"})
    cut = data.index(b"b" * 5000) + 1000  # the last picture's header is whole, its bytes are not
    path = tmp_path / "cut.tar"
    path.write_bytes(data[:cut])
    with pytest.raises(DataError, match="truncated: member 1.png declares 5000 bytes"):
        ShardChecker(["png"], lambda fields: None)(path)
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("0.png")
        info.size = 3 << 30  # a header that declares 3 GiB, followed by nothing
        tar.addfile(info)
    path.write_bytes(bomb.getvalue()[:4096])
    with pytest.raises(DataError, match="declares 3221225472 bytes, more than the 1073741824"):
        ShardChecker(["png"], lambda fields: None)(path)


# --------------------------------------------------------------------------- 10, 11, 12. checkpoints
def tiny(n: int) -> dict:
    return {"format": ck.FORMAT, "version": ck.VERSION, "model": {"w": torch.full((300,), float(n))},
            "config": {"n": n}, "position": {"epoch": n, "global_step": n}}


def test_a_malformed_record_counts_as_damage_and_resume_falls_back(run):
    last = run / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x10
    last.write_bytes(bytes(data))
    record_path(last).write_text("garbage")
    status = verify(last)
    assert status.state == "damaged" and "malformed" in status.reason
    assert newest_intact(run, warn=None).path.name == "epoch_0002.pt"
    result = runner.invoke(app, ["train", "--resume", "--epochs", "3", "--allow-config-change", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "last.pt is damaged (checksum record last.pt.sha256 is malformed)" in result.output
    assert "epoch_0002.pt" in result.output and verify(last).state == "ok"


class Killed(BaseException):
    """Stands for SIGKILL: nothing of the save's own clean-up runs."""


@pytest.mark.parametrize("first", [0, 1, 2, None])
@pytest.mark.parametrize("second", [0, 1, 2, None])
def test_kills_between_any_two_steps_of_two_saves_leave_a_verifiable_pair(tmp_path, monkeypatch, first, second):
    """A save's steps: write the temp file, write the temp record (kill point 0: before either
    rename), rename the record (1: between the renames), rename the file (2: before the directory
    fsync), None: not killed. Two saves in a row, killed at any pair of points."""
    path = tmp_path / "last.pt"
    ck.atomic_save(tiny(1), path)
    real_replace, real_fsync = os.replace, os.fsync

    def save_killed_at(n: int, point: int | None) -> None:
        calls = {"replace": 0}

        def replace(src, dst):
            if point == calls["replace"]:
                raise Killed
            calls["replace"] += 1
            real_replace(src, dst)

        def fsync(fd):
            if point == 2 and calls["replace"] == 2:
                raise Killed
            real_fsync(fd)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "fsync", fsync)
        try:
            ck.atomic_save(tiny(n), path)
        except Killed:
            pass
        finally:
            monkeypatch.setattr(os, "replace", real_replace)
            monkeypatch.setattr(os, "fsync", real_fsync)

    save_killed_at(2, first)
    save_killed_at(3, second)
    status = verify(path)
    assert status.state == "ok", status.reason
    loaded = ck.load_checkpoint(path)["config"]["n"]
    expected = 3 if second in (2, None) else 2 if first in (2, None) else 1
    assert loaded == expected and status.step == expected


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_full_disk_is_one_line_no_temp_file_and_the_previous_checkpoint(tmp_path, monkeypatch, wrapped):
    path = tmp_path / "last.pt"
    ck.atomic_save(tiny(1), path)
    real_save = torch.save

    def full_disk(obj, fh):
        fh.write(b"partial")
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if not wrapped:
            raise error
        try:
            raise error
        except OSError as exc:  # what torch's zip writer does with the OS's error
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0") from exc

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(ck.CheckpointError, match="could not write checkpoint .*last.pt: No space left on device"):
        ck.atomic_save(tiny(2), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "last.pt.sha256"]
    assert ck.load_checkpoint(path)["config"] == {"n": 1} and verify(path).state == "ok"


def test_a_full_disk_during_training_is_one_line_and_exit_2(run, monkeypatch):
    before = snapshot(run / "checkpoints")

    def full_disk(obj, fh):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from OSError(
            errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    result = runner.invoke(app, ["train", "--resume", "--epochs", "3", "--allow-config-change", "--out", str(run)])
    assert result.exit_code == 2, result.output
    errors = errors_of(result.output)
    assert len(errors) == 1 and "No space left on device" in errors[0] and "last.pt" in errors[0], result.output
    assert snapshot(run / "checkpoints") == before


@pytest.mark.parametrize("command", ["eval", "visualize"])
def test_a_read_only_run_folder_fails_before_the_work(run, monkeypatch, command):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # root ignores chmod: refuse creations as a ro mount does
        if str(path).startswith(str(run)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    result = runner.invoke(app, [command, str(run)])
    assert result.exit_code == 2, result.output
    assert errors_of(result.output) == [f"error: {run}: cannot write there (Read-only file system)"], result.output
