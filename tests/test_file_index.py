"""The file index: built once (in a process pool for long lists), reused on the next start,
re-checked per file when its size or mtime changes; threads: usable CPUs, --threads, oversubscription."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from maskkit import file_index, threads
from maskkit.cli.app import app
from maskkit.modalities.image.data import ImageFolder


def make_folder(root, n=6):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), (20 * i) % 256, np.uint8)).save(root / f"{i}.png")
    return root


def open_folder(root, **kw):
    return ImageFolder(root, str(root), channels=None, on_bad_file=kw.pop("on_bad_file", "error"), size=(8, 8),
                       augment=False, policy="none", seed=0)


def test_index_is_reused_and_invalidated_by_size_or_mtime(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs")
    calls = []
    real = file_index.check_all

    def counting(items, check, workers=None):
        calls.append([os.path.basename(str(p)) for p in items])
        return real(items, check, workers)

    monkeypatch.setattr(file_index, "check_all", counting)
    assert len(open_folder(root)) == 6
    index = root / ".maskkit-index" / "image-files.json"
    assert index.is_file() and len(json.loads(index.read_text())["entries"]) == 6
    assert len(open_folder(root)) == 6  # second start: nothing re-checked
    assert calls == [[f"{i}.png" for i in range(6)], []]
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(root / "2.png")  # size changes
    stamp = os.stat(root / "4.png").st_mtime_ns
    os.utime(root / "4.png", ns=(stamp + 10**9, stamp + 10**9))  # only mtime changes
    (root / "5.png").write_bytes(b"broken now")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = open_folder(root, on_bad_file="skip")
    assert calls[-1] == ["2.png", "4.png", "5.png"] and len(ds) == 5
    with pytest.raises(Exception, match="5.png: not an image"):  # a cached bad verdict still fails the run
        open_folder(root)
    assert calls[-1] == []


def test_pool_scan_equals_in_process_scan(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "many", n=40)
    (root / "bad.png").write_bytes(b"x")
    from maskkit.modalities.image.data import image_mode

    items = sorted(root.glob("*.png"))
    monkeypatch.setattr(file_index, "POOL_MIN_ITEMS", 1)
    pooled = file_index.check_all(items, image_mode, workers=2)
    serial = file_index.check_all(items, image_mode, workers=1)
    assert pooled == serial and sum(not ok for ok, _ in pooled) == 1


def test_index_falls_back_to_the_user_cache_for_read_only_folders(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "ro")
    monkeypatch.setenv("MASKKIT_INDEX_DIR", str(tmp_path / "cache"))
    path = file_index.index_file(root, "image-files")
    assert path.parent == tmp_path / "cache" and path.name.endswith("-image-files.json")


def test_data_check_lists_bad_files_like_training(tmp_path):
    root = make_folder(tmp_path / "imgs")
    (root / "a.png").write_bytes(b"")
    (root / "b.png").write_bytes(b"not png")
    result = CliRunner().invoke(app, ["data", "check", str(root), "--modality", "image"])
    assert result.exit_code == 1
    assert f"bad: {root / 'a.png'}: empty file" in result.output
    assert f"bad: {root / 'b.png'}: not an image Pillow can read" in result.output
    assert "6 readable, 2 bad" in result.output
    train = CliRunner().invoke(app, ["train", "--modality", "image", "--data", str(root), "--out",
                                     str(tmp_path / "run"), "--no-progress"])
    assert train.exit_code == 2 and "2 unreadable file(s)" in train.output and "b.png: not an image" in train.output
    ok = CliRunner().invoke(app, ["data", "check", str(make_folder(tmp_path / "good")), "--modality", "image"])
    assert ok.exit_code == 0 and "6 readable, 0 bad" in ok.output


def test_data_shard_writes_webdataset_shards(tmp_path):
    wds = pytest.importorskip("webdataset")
    for c in ("x", "y"):
        make_folder(tmp_path / "src" / c, n=5)
    result = CliRunner().invoke(app, ["data", "shard", str(tmp_path / "src"), "--out", str(tmp_path / "sh"),
                                      "--max-count", "4"])
    assert result.exit_code == 0, result.output
    assert "10 samples in 3 shard(s)" in result.output
    shards = sorted(str(p) for p in (tmp_path / "sh").glob("*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    assert [int(s["cls"]) for s in samples] == [0] * 5 + [1] * 5
    assert samples[0]["png"] == (tmp_path / "src" / "x" / "0.png").read_bytes()
    assert json.loads(samples[7]["json"])["class_name"] == "y"
    again = tmp_path / "sh2"
    CliRunner().invoke(app, ["data", "shard", str(tmp_path / "src"), "--out", str(again), "--max-count", "4"])
    assert (again / "shard-000000.tar").read_bytes() == (tmp_path / "sh" / "shard-000000.tar").read_bytes()


def test_usable_cpus_follow_affinity_and_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.usable_cpus() == 8
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2.5)
    assert threads.usable_cpus() == 3
    monkeypatch.undo()
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None


def test_threads_option_and_default(monkeypatch):
    before = torch.get_num_threads()
    try:
        for name in ("MASKKIT_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(threads, "usable_cpus", lambda: 3)
        assert threads.configure_threads(None) == 3 and torch.get_num_threads() == 3
        assert threads.configure_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "usable_cpus", lambda: 16)
        monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4(x2)")  # 4 tasks on each of 2 nodes
        assert threads.default_threads() == 4
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # torchrun's count wins
        assert threads.default_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what torchrun and SLURM scripts set
        assert threads.configure_threads(None) == 1
        monkeypatch.setenv("MASKKIT_THREADS", "2")
        assert threads.configure_threads(None) == 2
        assert threads.configure_threads(3) == 3  # --threads first
        monkeypatch.setenv("MASKKIT_THREADS", "0")
        with pytest.raises(ValueError, match="MASKKIT_THREADS must be >= 1"):
            threads.default_threads()
        result = CliRunner().invoke(app, ["data", "check", "builtin:digits", "--threads", "0"])
        assert result.exit_code == 2 and "--threads must be >= 1" in result.output
    finally:
        torch.set_num_threads(before)
        threads._configured = None


def test_oversubscription_warning(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (9.5, 8.0, 7.0))
    message = threads.oversubscription(threads=2)
    assert "load average 9.5 on 2 usable CPU(s)" in message and "(try setting `threads` to 1)" in message
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert threads.oversubscription(threads=2) is None


def test_bench_data_reports_loader_beside_step(tmp_path):
    root = make_folder(tmp_path / "imgs", n=24)
    out = tmp_path / "bench.jsonl"
    result = CliRunner().invoke(app, ["bench", "--modality", "image", "--model", "nano", "--image-size", "8",
                                      "--patch-size", "4", "--batch-size", "4", "--steps", "1", "--warmup", "0",
                                      "--data", str(root), "--num-workers", "0", "--loader-batches", "8",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "data pipeline" in result.output and "bounds the run" in result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    loader = [r["loader"] for r in rows if "loader" in r]
    step = [r for r in rows if "ms_per_step" in r]
    assert len(loader) == 1 and len(step) == 1
    assert loader[0]["batches"] == 8 and loader[0]["samples_per_s"] > 0 and loader[0]["num_workers"] == 0


def _rank_scan(rank, store, root, results):
    import torch.distributed as dist

    from maskkit.modalities.image.data import image_mode

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        items = sorted(str(p) for p in root.glob("*.png"))
        outcomes, counts = file_index.cached_check(items, image_mode, root, "image-files")
        results.put((rank, counts, [ok for ok, _ in outcomes]))
    finally:
        dist.destroy_process_group()


def test_rank_zero_builds_the_index_and_the_other_ranks_reuse_it(tmp_path):
    import multiprocessing

    root = make_folder(tmp_path / "imgs", n=8)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_scan, args=(r, tmp_path / "store", root, results)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = dict((rank, (counts, oks)) for rank, counts, oks in (results.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    assert got[0][0] == {"cached": 0, "checked": 8}  # rank 0 scanned
    assert got[1][0] == {"cached": 8, "checked": 0}  # rank 1 waited, then read rank 0's index
    assert got[0][1] == got[1][1] == [True] * 8
