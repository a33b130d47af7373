"""The GPU checks that no CPU test can do, as one short script for the first machine with a GPU.

    python scripts/gpu_check.py --out gpu-check            # on a CUDA machine (a few minutes)
    python scripts/gpu_check.py --device cpu --quick       # the same code paths, tiny, on a CPU

It writes one JSON line per measurement to OUT/gpu_check.jsonl:
1. ``maskkit bench`` rows for ViT-B/16 at 224², bf16: random and self-guided (MFU, ratio);
2. ``eigh`` against power iteration for batches of graphs of 196 and 1568 tokens;
3. a 200-step training run under ``torch.cuda.set_sync_debug_mode("warn")`` (every host sync in
   the step is printed; the expected ones are the per-optimiser-step non-finite check, the stop
   check and the log lines);
4. a 2-step training run per modality.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from maskkit.lab.bench import bench_step
from maskkit.maskers import graph
from maskkit.train.config import TrainConfig
from maskkit.train.trainer import run_training


def timed(fn, repeat: int, device: torch.device) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / repeat * 1e3


def eigh_vs_power(device: torch.device, tokens: int, batch: int) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    f = torch.randn(batch, tokens, 64, generator=g, device=device)
    w = graph.affinity_from_similarity(graph.cosine_similarity(graph.prepare_features(f)), "tokencut",
                                       tau_quantile=0.6, min_neighbours=3)
    start = torch.randn(batch, tokens, 2, generator=g, device=device)
    eigh_ms = timed(lambda: graph.bipartition(w, "ncut"), 3, device)
    power_ms = timed(lambda: graph.bipartition(w, "power", start=start), 3, device)
    e, p = graph.bipartition(w, "ncut"), graph.bipartition(w, "power", start=start)
    agree = torch.maximum((e.labels == p.labels).float().mean(1), (e.labels != p.labels).float().mean(1))
    return {"check": "eigh_vs_power", "tokens": tokens, "batch": batch, "eigh_ms": eigh_ms,
            "power_ms": power_ms, "label_agreement_min": float(agree.min())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke run of this script)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    lines = out / "gpu_check.jsonl"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"

    def record(row: dict) -> None:
        row = {"device": name, **row}
        print(json.dumps(row))
        with lines.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    quick = args.quick
    precision = "bf16" if device.type == "cuda" else "fp32"
    image = {"image_size": 32 if quick else 224, "patch_size": 8 if quick else 16}
    for masker in ("random", "self-guided"):
        cfg = TrainConfig(modality="image", model="nano" if quick else "base", modality_options=image,
                          batch_size=4 if quick else 256, device=args.device, precision=precision, masker=masker)
        record({"check": "bench", **asdict(bench_step(cfg, steps=2 if quick else 20, warmup=1 if quick else 5))})
    for tokens in ((16, 64) if quick else (196, 1568)):
        record(eigh_vs_power(device, tokens, batch=4 if quick else 64))
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("warn")
    steps = 4 if quick else 200
    cfg = TrainConfig(modality="image", model="nano", masker="self-guided", epochs=1, batch_size=8,
                      max_steps_per_epoch=steps, device=args.device, progress=False, log_every=50,
                      masker_options={"start": "epoch", "start_epoch": 0}, out=str(out / "sync-run"))
    record({"check": "sync_run", "steps": run_training(cfg).steps})
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode(0)
    for modality in ("image", "video", "audio", "pointcloud"):
        cfg = TrainConfig(modality=modality, epochs=1, batch_size=2, max_steps_per_epoch=2, device=args.device,
                          progress=False, out=str(out / f"run-{modality}"))
        record({"check": "two_steps", "modality": modality, "loss": run_training(cfg).final_loss})


if __name__ == "__main__":
    main()
