"""Sharded sources: WebDataset tar shards and hf: datasets train, resume after SIGKILL bit-identically
(so the remaining samples are the same), and are probed by `maskkit eval`; bad records are named."""

import io
import json
import os
import signal
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.lab.shard_writer import folder_samples, write_shards
from maskkit.modality import DataError
from maskkit.records import expand_braces, open_records, split_name
from maskkit.train.checkpoint import load_checkpoint

IMAGE_ARGS = ["--modality", "image", "--image-size", "16", "--patch-size", "4"]
AUDIO_ARGS = ["--modality", "audio", "--sample-rate", "8000", "--num-frames", "32",
              "--modality-opt", "n_mels=32", "--patch-size", "8"]
COMMON = ["--model", "nano", "--batch-size", "4", "--epochs", "3", "--no-progress", "--log-every", "1",
          "--seed", "3"]


def make_pngs(root, classes=("cat", "dog"), per_class=32, side=12):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((side, side, 3)) * 80 + 120 * c).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def make_wavs(root, per_class=32):
    from maskkit.modalities.audio.io import write_wav

    t = np.arange(4000) / 8000
    for c, name in enumerate(("low", "high")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            write_wav(root / name / f"{i:03d}.wav", 0.5 * np.sin(2 * np.pi * (300 + 1500 * c + 10 * i) * t), 8000)
    return root


def shards_of(tmp_path, kind):
    folder = make_pngs(tmp_path / "images") if kind == "image" else make_wavs(tmp_path / "wavs")
    suffix = [".png"] if kind == "image" else [".wav"]
    write_shards(folder_samples(folder, suffix), tmp_path / "shards", max_count=16)
    return str(tmp_path / "shards" / "shard-{000000..000003}.tar")


def hf_images(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(1)
    images = [Image.fromarray((rng.random((12, 12, 3)) * 80 + 120 * (i % 2)).astype(np.uint8)) for i in range(64)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(64)]}, features=features)
    ds.save_to_disk(str(tmp_path / "hf"))
    return f"hf:{tmp_path / 'hf'}"


# --------------------------------------------------------------------------- the reader itself
def test_brace_expansion_matches_braceexpand():
    braceexpand = pytest.importorskip("braceexpand")
    for pattern in ["a-{000000..000003}.tar", "x{1..3}/y{a,b}.tar", "s-{8..11}.tar", "plain.tar"]:
        assert expand_braces(pattern) == list(braceexpand.braceexpand(pattern))


def test_key_rule_matches_webdataset():
    from webdataset.tariterators import base_plus_ext

    for name in ["dir/s001.png", "s001.seg.png", "a/b/c.cls", "x.tar.json"]:
        key, ext = base_plus_ext(name)
        assert split_name(name) == (key, ext.lower())


def test_shards_read_back_as_webdataset_reads_them(tmp_path):
    wds = pytest.importorskip("webdataset")
    spec = shards_of(tmp_path, "image")
    from maskkit.modalities.image.records import IMAGE_KEYS, check_image_record

    source = open_records(spec, IMAGE_KEYS, check_image_record, "error", kind="test-image")
    ref = list(wds.WebDataset(expand_braces(spec), shardshuffle=False))
    assert len(source) == len(ref) == 64
    assert source.keys == [s["__key__"] for s in ref]
    assert [source.read(i)["png"] for i in range(64)] == [s["png"] for s in ref]
    assert source.labels.tolist() == [int(s["cls"]) for s in ref] and source.class_names == ["cat", "dog"]


def test_bad_records_are_named_with_shard_and_key(tmp_path):
    spec = shards_of(tmp_path, "image")
    path = tmp_path / "shards" / "shard-000002.tar"
    with tarfile.open(tmp_path / "bad.tar", "w") as out, tarfile.open(path) as src:
        for member in src:
            data = src.extractfile(member).read()
            if member.name.startswith(("000035.", "000040.")) and member.name.endswith(".png"):
                data = b"not a png"
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    os.replace(tmp_path / "bad.tar", path)
    from maskkit.modalities.image.records import record_images

    with pytest.raises(DataError) as info:
        record_images(spec, "error", channels=None, size=(16, 16), augment=False, policy="none", seed=0)
    message = str(info.value)
    assert "2 unreadable records" in message and "shard-000002.tar:000035: not an image" in message
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = record_images(spec, "skip", channels=None, size=(16, 16), augment=False, policy="none", seed=0)
    assert len(ds) == 62
    result = CliRunner().invoke(app, ["data", "check", spec, "--modality", "image"])
    assert result.exit_code == 1
    assert "bad: " + str(path) + ":000040" in result.output and "62 readable, 2 bad" in result.output


def test_compressed_and_remote_shards_are_refused(tmp_path):
    for spec, words in [(str(tmp_path / "a.tar.gz"), "compressed shards"),
                        ("https://host/a-{0..3}.tar", "not URLs"), (str(tmp_path / "x-{0..1}.tar"), "missing")]:
        result = CliRunner().invoke(app, ["train", *IMAGE_ARGS, "--data", spec, "--out", str(tmp_path / "r")])
        assert result.exit_code == 2 and words in result.output, result.output


# --------------------------------------------------------------------------- train, SIGKILL, resume, eval
def train(out, data, modality_args, *extra, wait=True):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASKKIT_THREADS="1")
    cmd = [sys.executable, "-m", "maskkit", "train", *modality_args, *COMMON, "--data", data, "--out", str(out),
           *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    return proc


def wait_then_kill(out, proc, step):
    import time

    metrics = out / "metrics.jsonl"
    t0 = time.time()
    while time.time() - t0 < 120:
        if metrics.is_file():
            steps = [json.loads(x).get("step", 0) for x in metrics.read_text().splitlines() if x.strip()]
            if steps and max(steps) >= step:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be interrupted")
        time.sleep(0.02)
    pytest.fail("the run did not reach the step in time")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["image", "audio", "hf"])
def test_sharded_run_resumes_after_sigkill_and_is_probed(tmp_path, kind):
    data = hf_images(tmp_path) if kind == "hf" else shards_of(tmp_path, kind)
    args = AUDIO_ARGS if kind == "audio" else IMAGE_ARGS
    out = tmp_path / "run"
    proc = train(out, data, args, "--save-every-steps", "3", wait=False)
    wait_then_kill(out, proc, 6)
    position = load_checkpoint(out / "checkpoints/last.pt")["position"]
    assert 0 < position["global_step"] < 48  # killed part-way
    reference = tmp_path / "reference"  # in-process (one torch import less); the same single thread
    for run_dir, extra in ((reference, []), (out, ["--resume"])):
        result = CliRunner().invoke(app, ["train", *args, *COMMON, "--data", data, "--out", str(run_dir), *extra])
        assert result.exit_code == 0, result.output
    a, b = load_checkpoint(reference / "checkpoints/last.pt"), load_checkpoint(out / "checkpoints/last.pt")
    assert a["position"]["global_step"] == b["position"]["global_step"] == 48
    for key in a["model"]:  # same samples in the same order after the resume, or these would differ
        assert torch.equal(a["model"][key], b["model"][key]), key
    result = CliRunner().invoke(app, ["eval", str(out), "--max-samples", "64", "--no-baselines"])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "eval.json").read_text())
    assert payload["results"] and all(r["num_classes"] == 2 for r in payload["results"])


def test_hf_parquet_and_dataset_dict_read_like_save_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    from maskkit.train.build import build_dataset, build_modality

    saved = hf_images(tmp_path)
    ds = datasets.load_from_disk(saved[3:])
    ds.to_parquet(str(tmp_path / "pets.parquet"))
    datasets.DatasetDict({"train": ds, "test": ds.select(range(4))}).save_to_disk(str(tmp_path / "dict"))
    mod = build_modality("image", {"image_size": 16, "patch_size": 4})
    a = build_dataset(mod, saved, train=False, seed=0)
    b = build_dataset(mod, f"hf:{tmp_path / 'pets.parquet'}", train=False, seed=0)
    c = build_dataset(mod, f"hf:{tmp_path / 'dict'}", train=False, seed=0)
    assert len(a) == len(b) == len(c) == 64 and a.class_names == b.class_names == ["a", "b"]
    for i in (0, 5, 63):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][0], c[i][0]) and a[i][1] == b[i][1] == c[i][1]
    result = CliRunner().invoke(app, ["train", *IMAGE_ARGS, "--data", f"hf:{tmp_path / 'nope'}",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no such file or folder" in result.output


def test_shard_batches_do_not_depend_on_workers_or_ranks(tmp_path):
    from maskkit.train.build import build_dataset, build_modality
    from maskkit.train.data import EpochOrderSampler, build_loader

    spec = shards_of(tmp_path, "image")
    ds = build_dataset(build_modality("image", {"image_size": 16, "patch_size": 4}), spec, train=True, seed=0)

    def batches(workers, rank=0, world=1, start=0):
        sampler = EpochOrderSampler(len(ds), 4, seed=3, rank=rank, world_size=world)
        sampler.set_epoch(1, start_batch=start)
        return [(x, y) for x, y in build_loader(ds, sampler, workers, pin_memory=False)]

    one = batches(0)
    two = batches(2)
    assert len(one) == len(two) == 16
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, two, strict=True))
    resumed = batches(2, start=5)  # mid-epoch resume: exactly the remaining batches
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one[5:], resumed, strict=True)) and len(resumed) == 11
    ranks = [batches(0, rank=r, world=2) for r in (0, 1)]  # two ranks: equal step counts
    assert len(ranks[0]) == len(ranks[1]) == 8
    order = []
    for r in (0, 1):
        sampler = EpochOrderSampler(len(ds), 4, seed=3, rank=r, world_size=2)
        sampler.set_epoch(1)
        order += sampler.epoch_indices()
    assert sorted(order) == list(range(64))  # disjoint halves covering every record once
