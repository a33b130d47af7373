"""Synthetic labelled 1-D signals: a default dataset that needs no download.

Each class is a waveform family; every signal draws its own frequency, phase, amplitude and
offset, plus a little noise, so classes differ in shape rather than in one fixed pattern.
Generation is vectorised per class and fully determined by the seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Generator = Callable[[np.random.Generator, np.ndarray, int], np.ndarray]  # (rng, t, count) -> (count, L)


def _phase(rng: np.random.Generator, t: np.ndarray, n: int,
           cycles: tuple[float, float] = (2, 8)) -> np.ndarray:
    """(n, L) phase in cycles: random frequency (cycles per window) and random start."""
    freq = rng.uniform(*cycles, size=(n, 1))
    return freq * t[None, :] + rng.random((n, 1))


def sine(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    return np.sin(2 * np.pi * _phase(rng, t, n))


def square(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    return np.where(_phase(rng, t, n) % 1.0 < 0.5, 1.0, -1.0)


def sawtooth(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    return 2.0 * (_phase(rng, t, n) % 1.0) - 1.0


def triangle(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    return 4.0 * np.abs((_phase(rng, t, n) % 1.0) - 0.5) - 1.0


def chirp(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    f0, f1 = rng.uniform(1, 3, size=(n, 1)), rng.uniform(8, 14, size=(n, 1))
    up = rng.random((n, 1)) < 0.5  # rising or falling
    f0, f1 = np.where(up, f0, f1), np.where(up, f1, f0)
    return np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t**2 + rng.random((n, 1))))


def burst(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    """Silence with one to three short bursts of noise."""
    out = np.zeros((n, len(t)))
    for _ in range(3):
        centre, width = rng.random((n, 1)), rng.uniform(0.03, 0.1, size=(n, 1))
        active = rng.random((n, 1)) < 0.7
        envelope = np.exp(-0.5 * ((t[None] - centre) / width) ** 2) * active
        out += envelope * rng.normal(size=out.shape) * 1.5
    return np.clip(out, -1.5, 1.5)


def damped(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    decay = rng.uniform(3, 8, size=(n, 1))
    start = rng.uniform(0, 0.3, size=(n, 1))
    envelope = np.where(t[None] >= start, np.exp(-decay * (t[None] - start)), 0.0)
    return envelope * np.sin(2 * np.pi * _phase(rng, t, n, (6, 12)))


def steps(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    """Piecewise-constant levels with 3 to 6 random change points."""
    levels = rng.uniform(-1, 1, size=(n, 7))
    cuts = np.sort(rng.random((n, 6)), axis=1)
    cuts[rng.random((n, 6)) < 0.3] = 2.0  # drop some change points
    which = (t[None, :, None] > cuts[:, None, :]).sum(-1)
    return np.take_along_axis(levels, which, axis=1)


SIGNALS: dict[str, Generator] = {
    "sine": sine, "square": square, "sawtooth": sawtooth, "triangle": triangle,
    "chirp": chirp, "burst": burst, "damped": damped, "steps": steps,
}


def generate_signals(per_class: int, length: int, seed: int = 0,
                     noise: float = 0.05) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """-> (signals (n, length) float32, labels (n,) int64, class names), shuffled."""
    rng = np.random.default_rng([seed, 1_729])
    t = np.linspace(0.0, 1.0, length, endpoint=False)
    names = list(SIGNALS)
    xs, ys = [], []
    for label, name in enumerate(names):
        x = SIGNALS[name](rng, t, per_class)
        x = x * rng.uniform(0.5, 1.5, size=(per_class, 1)) + rng.uniform(-0.3, 0.3, size=(per_class, 1))
        xs.append(x + rng.normal(scale=noise, size=x.shape))
        ys.append(np.full(per_class, label))
    order = rng.permutation(per_class * len(names))
    return np.concatenate(xs)[order].astype(np.float32), np.concatenate(ys)[order].astype(np.int64), names


__all__ = ["SIGNALS", "generate_signals"]
