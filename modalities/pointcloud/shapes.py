"""``builtin:shapes``: labelled primitive shapes sampled analytically, so point-cloud runs need no download.

Each class has a numpy surface sampler that is uniform by area; every cloud gets its own shape
parameters, a random rotation, an anisotropic scale and a little jitter. Generation is
vectorised per class and fully determined by the seed (~0.2 s for 900 clouds of 1024 points).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .io import sample_surface

Sampler = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, clouds, points) -> (n, P, 3)


def _choose(rng: np.random.Generator, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per-cloud component choice by area: weights (n, K) -> (n, P) indices."""
    cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(shape)
    return np.minimum((u[:, :, None] > cdf[:, None, :]).sum(-1), weights.shape[1] - 1)


def _unit_sphere(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.normal(size=(*shape, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def sphere(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    return _unit_sphere(rng, (n, p))


def cube(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    face = rng.integers(0, 6, size=(n, p))
    pts = rng.uniform(-1, 1, size=(n, p, 3))
    axis, sign = face % 3, np.where(face < 3, 1.0, -1.0)
    np.put_along_axis(pts, axis[..., None], sign[..., None], axis=-1)
    return pts


def _cylinder_parts(rng: np.random.Generator, n: int, p: int, radius: np.ndarray,
                    half: np.ndarray, caps: str) -> np.ndarray:
    """Side + caps ('flat' discs or 'round' hemispheres = capsule)."""
    side = 2 * np.pi * radius * 2 * half
    cap = np.pi * radius**2 if caps == "flat" else 2 * np.pi * radius**2
    part = _choose(rng, np.stack([side, cap, cap], axis=1), (n, p))
    theta = rng.uniform(0, 2 * np.pi, size=(n, p))
    r, h = radius[:, None], half[:, None]
    out = np.stack([r * np.cos(theta), r * np.sin(theta), rng.uniform(-1, 1, size=(n, p)) * h], -1)
    sign = np.where(part == 1, 1.0, -1.0)
    if caps == "flat":
        rad = r * np.sqrt(rng.random((n, p)))
        disc = np.stack([rad * np.cos(theta), rad * np.sin(theta), sign * h], -1)
    else:
        hemi = _unit_sphere(rng, (n, p)) * r[..., None]
        hemi[..., 2] = np.abs(hemi[..., 2]) * sign + sign * h
        disc = hemi
    return np.where((part > 0)[..., None], disc, out)


def cylinder(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    return _cylinder_parts(rng, n, p, rng.uniform(0.5, 0.8, n), rng.uniform(0.7, 1.0, n), "flat")


def capsule(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    return _cylinder_parts(rng, n, p, rng.uniform(0.35, 0.5, n), rng.uniform(0.6, 0.9, n), "round")


def cone(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    radius, height = rng.uniform(0.6, 1.0, n), rng.uniform(1.2, 2.0, n)
    lateral = np.pi * radius * np.sqrt(radius**2 + height**2)
    part = _choose(rng, np.stack([lateral, np.pi * radius**2], axis=1), (n, p))
    theta = rng.uniform(0, 2 * np.pi, size=(n, p))
    r, h = radius[:, None], height[:, None]
    t = np.sqrt(rng.random((n, p)))  # fraction of the way from the apex; sqrt makes it uniform by area
    side = np.stack([t * r * np.cos(theta), t * r * np.sin(theta), h / 2 - t * h], -1)
    rad = r * np.sqrt(rng.random((n, p)))
    base = np.stack([rad * np.cos(theta), rad * np.sin(theta), np.broadcast_to(-h / 2, (n, p))], -1)
    return np.where((part == 1)[..., None], base, side)


def torus(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    major, minor = rng.uniform(0.7, 1.0, n)[:, None], rng.uniform(0.2, 0.35, n)[:, None]
    # area density of the tube angle phi is proportional to (R + r cos phi): rejection sampling
    phi = np.empty((n, p))
    filled = np.zeros((n, p), dtype=bool)
    while not filled.all():
        cand = rng.uniform(0, 2 * np.pi, size=(n, p))
        keep = rng.random((n, p)) * (major + minor) <= major + minor * np.cos(cand)
        take = keep & ~filled
        phi[take] = cand[take]
        filled |= take
    theta = rng.uniform(0, 2 * np.pi, size=(n, p))
    ring = major + minor * np.cos(phi)
    return np.stack([ring * np.cos(theta), ring * np.sin(theta), minor * np.sin(phi)], -1)


def disk(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi, size=(n, p))
    rad = np.sqrt(rng.random((n, p)))
    return np.stack([rad * np.cos(theta), rad * np.sin(theta), np.zeros((n, p))], -1)


def _mesh_sampler(vertices: list[list[float]], faces: list[list[int]]) -> Sampler:
    v, f = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)

    def sample(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
        return sample_surface(v, f, n * p, rng).reshape(n, p, 3)

    return sample


pyramid = _mesh_sampler(
    [[-1, -1, -0.6], [1, -1, -0.6], [1, 1, -0.6], [-1, 1, -0.6], [0, 0, 1.0]],
    [[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
octahedron = _mesh_sampler(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])

SHAPES: dict[str, Sampler] = {
    "sphere": sphere, "cube": cube, "cylinder": cylinder, "cone": cone, "torus": torus,
    "capsule": capsule, "pyramid": pyramid, "octahedron": octahedron, "disk": disk,
}


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) rotations uniform on SO(3) (QR of Gaussian matrices, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[det < 0, :, 0] *= -1
    return q


def generate_shapes(per_class: int, num_points: int = 1024, seed: int = 0,
                    scale_range: tuple[float, float] = (0.75, 1.25),
                    jitter: float = 0.01) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """-> (clouds (n, num_points, 3) float32, labels (n,) int64, class names), shuffled."""
    rng = np.random.default_rng([seed, 7_401])
    names = list(SHAPES)
    clouds, labels = [], []
    for label, name in enumerate(names):
        pts = SHAPES[name](rng, per_class, num_points)
        pts = pts * rng.uniform(*scale_range, size=(per_class, 1, 3))
        pts = pts @ random_rotations(rng, per_class).transpose(0, 2, 1)
        pts = pts + np.clip(rng.normal(scale=jitter, size=pts.shape), -3 * jitter, 3 * jitter)
        clouds.append(pts)
        labels.append(np.full(per_class, label))
    order = rng.permutation(per_class * len(names))
    return (np.concatenate(clouds)[order].astype(np.float32), np.concatenate(labels)[order].astype(np.int64),
            names)


__all__ = ["SHAPES", "generate_shapes", "random_rotations"]
