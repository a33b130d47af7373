"""Loader vs training-step throughput per modality (docs/benchmarks.md, "Data pipeline").

    python scripts/bench_data.py [--root /tmp/maskkit-data-bench] [--workers 0 2] [--device cpu]

Writes a small synthetic dataset per modality as files and as WebDataset shards (once), then runs
`maskkit bench --data` on each with the default model and data shape, batch 32, and prints the
JSON lines `maskkit bench --json` appends.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def make_images(root: Path, n: int = 2000) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = root / f"c{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(sub / f"{i:05d}.png")


def make_audio(root: Path, n: int = 400) -> None:
    from maskkit.modalities.audio.io import write_wav

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for i in range(n):
        sub = root / f"c{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(len(t))
        write_wav(sub / f"{i:05d}.wav", wave, 16000)


def make_video(root: Path, n: int = 64) -> None:
    from maskkit.modalities.video.io import write_video

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = root / f"c{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        frames = rng.integers(0, 256, (48, 64, 64, 3), dtype=np.uint8)
        write_video(sub / f"{i:05d}.mp4", frames)


def make_points(root: Path, n: int = 400) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = root / f"c{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        np.save(sub / f"{i:05d}.npy", rng.normal(size=(4096, 3)).astype(np.float32))


MAKERS = {"image": (make_images, [".png"]), "audio": (make_audio, [".wav"]),
          "video": (make_video, [".mp4"]), "pointcloud": (make_points, [".npy"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path("/tmp/maskkit-data-bench"))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modalities", nargs="+", default=list(MAKERS))
    args = parser.parse_args()
    from maskkit.lab.shard_writer import folder_samples, write_shards

    for modality in args.modalities:
        make, suffixes = MAKERS[modality]
        files = args.root / modality / "files"
        if not files.is_dir():
            make(files)
        shards = args.root / modality / "shards"
        if not shards.is_dir():
            write_shards(folder_samples(files, suffixes), shards, max_count=100)
        for data in (files, shards):
            out = args.root / f"{modality}-{data.name}.jsonl"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "maskkit", "bench", "--modality", modality, "--batch-size", "32",
                   "--steps", "5", "--warmup", "2", "--device", args.device, "--data", str(data),
                   "--loader-batches", "10", "--json", str(out)]
            for w in args.workers:
                cmd += ["--num-workers", str(w)]
            subprocess.run(cmd, check=True, capture_output=True)
            for line in out.read_text().splitlines():
                row = json.loads(line)
                row = row.get("loader", row)
                keep = {k: row[k] for k in ("num_workers", "samples_per_s", "start_s", "ms_per_step") if k in row}
                print(json.dumps({"modality": modality, "source": data.name, **keep}))


if __name__ == "__main__":
    main()
