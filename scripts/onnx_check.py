"""ONNX export beside torch: train a nano image run (digits 16x16, patch 4), export it, compare features.

Usage: python scripts/onnx_check.py OUT_DIR   (needs pip install "maskkit[onnx]"; docs/interop.md quotes it)
"""

from __future__ import annotations

import sys
import time

import numpy as np
import onnxruntime as ort
import torch

import maskkit
import maskkit.train.trainer


def main(out: str) -> None:
    torch.set_num_threads(1)
    run = f"{out}/run"
    maskkit.train.trainer.run_training(maskkit.TrainConfig(
        modality="image", model="nano", epochs=1, batch_size=16, max_steps_per_epoch=2, out=run, progress=False,
        overwrite=True, modality_options={"image_size": 16, "patch_size": 4}))
    start = time.perf_counter()
    maskkit.export(run, "onnx", f"{out}/onnx")
    print(f"export {time.perf_counter() - start:.1f}s")
    model, modality, _ = maskkit.load(run)
    session = ort.InferenceSession(f"{out}/onnx/encoder.onnx", providers=["CPUExecutionProvider"])
    dataset = modality.build_dataset("builtin:digits", train=False, seed=0)
    for batch in (1, 3, 64):
        x = torch.stack([dataset[i][0] for i in range(batch)])
        with torch.no_grad():
            expected = model.encode(x).numpy()
        got = session.run(["features"], {"samples": x.numpy()})[0]
        print(f"batch {batch}: shape {got.shape} max|onnx - torch| {np.abs(got - expected).max():.2e} "
              f"(features up to {np.abs(expected).max():.2f})")


if __name__ == "__main__":
    main(sys.argv[1])
