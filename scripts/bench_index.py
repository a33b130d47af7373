"""Time a dataset's start with and without the file index (docs/benchmarks.md, "File index").

    python scripts/bench_index.py --images 20000 [--folder /tmp/idx-bench] [--threads N]

Writes N small PNGs in class folders (once), then opens the image dataset three times, each in a
fresh process: cold (no index: every file checked, in a process pool), warm (index reused), and
after touching 1 % of the files (only those re-checked). Prints seconds from "modules imported" to
"index ready" (listing the folder, stat-ing every file, checking what the index lacks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OPEN = """
import sys, time
from maskkit.threads import configure_threads
configure_threads({threads})
from maskkit.modalities.image.data import ImageFolder
t0 = time.perf_counter()  # after the imports, which every start pays whatever the data
ds = ImageFolder(__import__('pathlib').Path({folder!r}), {folder!r}, channels=None, on_bad_file='error',
                 size=(16, 16), augment=False, policy='none', seed=0)
print(len(ds), time.perf_counter() - t0)
"""


def make_images(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    marker = folder / f".made-{count}"
    if marker.is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"class{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(sub / f"{i:06d}.png")
    marker.write_text("ok")


def open_once(folder: Path, threads: int | None) -> tuple[int, float]:
    code = OPEN.format(folder=str(folder), threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    n, seconds = out.stdout.split()
    return int(n), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/maskkit-index-bench"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    t0 = time.perf_counter()
    make_images(args.folder, args.images)
    print(f"{args.images} PNGs ready in {time.perf_counter() - t0:.1f}s")
    shutil.rmtree(args.folder / ".maskkit-index", ignore_errors=True)
    n, cold = open_once(args.folder, args.threads)
    _, warm = open_once(args.folder, args.threads)
    for p in sorted(args.folder.rglob("*.png"))[:: 100]:
        os.utime(p)
    _, touched = open_once(args.folder, args.threads)
    print(f"{n} images: cold start {cold:.2f}s, second start {warm:.2f}s ({warm / cold:.2f}x), "
          f"after touching 1% {touched:.2f}s")


if __name__ == "__main__":
    main()
