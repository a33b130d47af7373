"""Batched graph maths on token features: cosine affinity, normalized cut, cut statistics.

Every function takes a leading batch dimension (one graph per sample), runs on whatever device its
inputs live on and never loops over samples in Python. Self-guided masking and the clustering
analysis share these, so a partition in a training log and in ``maskkit analyze`` mean the same.

Conventions: features are (B, N, D); affinities W are (B, N, N), symmetric, non-negative, with a
zero diagonal (self-loops carry no cut information, and leaving them out keeps degrees, volumes and
Laplacians identical to networkx's on the same weighted graph).

Precision: every public function accepts bf16/fp16 input and computes in fp32 with autocast off
(and TF32 off on CUDA), so a graph under a bf16 training step equals the fp32 graph. No function
reads a device value into Python except where marked (:func:`maskkit.sync_guard.deliberate_sync`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor

from maskkit.sync_guard import deliberate_sync
from maskkit.threads import single_thread

AffinityRule = Literal["tokencut", "knn", "clamp", "shift"]
SplitRule = Literal["zero", "mean", "median"]
_TINY = 1e-12
#: per-sample quantiles are exact up to this many off-diagonal pairs, then use an even subsample
_MAX_QUANTILE_PAIRS = 65536
#: largest graph for which CUDA's eigh is one batched kernel (syevjBatched); above it torch loops one
#: cuSOLVER call per matrix, so ``partition="auto"`` uses power iteration there
CUDA_BATCHED_EIGH_MAX = 32

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def full_fp32(device: torch.device) -> Iterator[None]:
    """Autocast off and, on CUDA, TF32 matmuls off: graph maths in true fp32.

    The switch is ``torch.set_float32_matmul_precision``, the one the trainer turns TF32 on with:
    setting ``allow_tf32`` beside it makes ``torch.get_float32_matmul_precision()`` raise."""
    if device.type == "cuda":
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            with torch.autocast(device_type="cuda", enabled=False):
                yield
        finally:
            torch.set_float32_matmul_precision(previous)
    elif device.type in ("cpu", "xpu", "mps"):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:
        yield


def fp32(fn: F) -> F:
    """Run ``fn`` in full fp32: half-precision tensor arguments are cast up, autocast is off."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        def up(v: Any) -> Any:
            return v.float() if isinstance(v, Tensor) and v.dtype in (torch.bfloat16, torch.float16) else v

        device = next((a.device for a in args if isinstance(a, Tensor)), torch.device("cpu"))
        with full_fp32(device):
            return fn(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- features
def l2_normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


@fp32
def prepare_features(features: Tensor, centre: bool = True, position_mean: Tensor | None = None,
                     normalize: bool = True) -> Tensor:
    """fp32 features ready for cosine: minus a per-position mean, minus the sample's mean token, unit length.

    Removing what position alone explains and centring per sample is what makes the cut follow
    content: without it, raw last-layer token cosines of a small ViT sat at 0.85-0.93 and a
    cos > 0.2 graph was nearly complete (docs/background/self-guided-small-scale.md).
    """
    x = features.float()
    if position_mean is not None:
        x = x - position_mean.to(device=x.device, dtype=x.dtype)
    if centre:
        x = x - x.mean(dim=1, keepdim=True)
    return l2_normalize(x) if normalize else x


@fp32
def cosine_similarity(x: Tensor) -> Tensor:
    """(B, N, D) unit-length features -> (B, N, N) cosines."""
    return x @ x.transpose(1, 2)


@fp32
def offdiagonal(s: Tensor) -> Tensor:
    """(B, N*(N-1)) off-diagonal entries of (B, N, N) ``s``, row by row."""
    n = s.shape[-1]
    # fixed gather indices, not a boolean mask (boolean indexing reads its size back to the host)
    k = torch.arange(n * (n - 1), device=s.device)
    row, col = k // (n - 1), k % (n - 1)
    col = col + (col >= row).long()
    return s.flatten(1).index_select(1, row * n + col)


@fp32
def offdiag_quantile(s: Tensor, q: float) -> Tensor:
    """(B,) per-sample quantile of the off-diagonal entries of (B, N, N) ``s`` (linear interpolation).

    Beyond ~65k pairs an evenly strided subset is used, so large token counts stay cheap.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    vals = offdiagonal(s)
    if vals.shape[1] > _MAX_QUANTILE_PAIRS:
        stride = math.ceil(vals.shape[1] / _MAX_QUANTILE_PAIRS)
        vals = vals[:, ::stride]
    pos = q * (vals.shape[1] - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    frac = pos - lo
    low = vals.kthvalue(lo + 1, dim=1, keepdim=True).values  # selection, ~4x cheaper than a sort
    if hi == lo or frac == 0.0:
        return low.squeeze(1)
    # the next order statistic without a second selection: low itself if it repeats past rank lo,
    # else the smallest value above it
    repeats = (vals <= low).sum(1, keepdim=True) > hi
    above = vals.masked_fill(vals <= low, float("inf")).min(1, keepdim=True).values
    high = torch.where(repeats, low, above)
    return (low * (1.0 - frac) + high * frac).squeeze(1)


@fp32
def knn_adjacency(s: Tensor, k: int) -> Tensor:
    """(B, N, N) bool: i and j linked when either is among the other's k most similar (diagonal off)."""
    n = s.shape[-1]
    k = max(1, min(k, n - 1))
    eye = torch.eye(n, dtype=torch.bool, device=s.device)
    idx = s.masked_fill(eye, float("-inf")).topk(k, dim=-1).indices
    adj = torch.zeros(s.shape, dtype=torch.bool, device=s.device).scatter_(-1, idx, True)
    return adj | adj.transpose(1, 2)


@fp32
def affinity_from_similarity(s: Tensor, rule: AffinityRule = "tokencut", tau: float = 0.2,
                             tau_quantile: float | None = None, knn: int = 0, eps: float = 1e-5,
                             min_neighbours: int = 0) -> Tensor:
    """Non-negative (B, N, N) weights from cosines, zero diagonal.

    - ``tokencut``: 1 where cos > tau, ``eps`` elsewhere (TokenCut). With ``tau_quantile`` the
      threshold is that quantile of each sample's own off-diagonal cosines.
    - ``knn``: 1 between mutual-or-one-way k nearest neighbours (symmetric union), ``eps`` elsewhere;
      ``knn=0`` picks round(sqrt(N)).
    - ``clamp``: max(cos, eps); ``shift``: (cos + 1) / 2.
    ``eps`` keeps the graph connected so the Laplacian has a single zero eigenvalue.
    ``min_neighbours`` (tokencut): also link every token to its that many most similar tokens, so
    no token is left with only ``eps`` links. An isolated token gives a near-zero eigenvalue whose
    eigenvector sits on that one token, and the cut would then split it off alone.
    """
    b, n, _ = s.shape
    s = s.float()
    if rule == "tokencut":
        if tau_quantile is not None:
            thr = offdiag_quantile(s, tau_quantile).view(b, 1, 1)
        else:
            thr = torch.full((b, 1, 1), float(tau), device=s.device)
        linked = s > thr
        if min_neighbours > 0:
            linked = linked | knn_adjacency(s, min_neighbours)
        w = torch.where(linked, torch.ones_like(s), torch.full_like(s, eps))
    elif rule == "knn":
        k = knn if knn > 0 else max(1, round(math.sqrt(n)))
        w = torch.where(knn_adjacency(s, k), torch.ones_like(s), torch.full_like(s, eps))
    elif rule == "clamp":
        w = s.clamp_min(eps)
    elif rule == "shift":
        w = (s + 1.0) * 0.5
    else:
        raise ValueError(f"unknown affinity rule {rule!r}; choose tokencut, knn, clamp or shift")
    eye = torch.eye(n, dtype=torch.bool, device=s.device)
    return w.masked_fill(eye, 0.0)


@fp32
def cosine_affinity(features: Tensor, rule: AffinityRule = "tokencut", tau: float = 0.2,
                    tau_quantile: float | None = None, knn: int = 0, eps: float = 1e-5,
                    centre: bool = True, position_mean: Tensor | None = None,
                    min_neighbours: int = 0) -> Tensor:
    """(B, N, D) raw features -> (B, N, N) affinity.

    See :func:`prepare_features` and :func:`affinity_from_similarity` for the options.
    """
    x = prepare_features(features, centre=centre, position_mean=position_mean)
    return affinity_from_similarity(cosine_similarity(x), rule, tau=tau, tau_quantile=tau_quantile,
                                    knn=knn, eps=eps, min_neighbours=min_neighbours)


# --------------------------------------------------------------------------- graph statistics
def degree(w: Tensor) -> Tensor:
    return w.sum(dim=-1)


@fp32
def normalized_laplacian(w: Tensor) -> Tensor:
    """L_sym = I - D^-1/2 W D^-1/2 (what ``nx.normalized_laplacian_matrix`` returns)."""
    inv = degree(w).clamp_min(_TINY).rsqrt()
    a = inv.unsqueeze(-1) * w * inv.unsqueeze(-2)
    eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    lap = eye - a
    return 0.5 * (lap + lap.transpose(-1, -2))


@fp32
def graph_density(w: Tensor) -> Tensor:
    """(B,) weighted density: mean off-diagonal weight. For 0/1 graphs (``eps`` ~ 0) it is the
    fraction of linked pairs, i.e. networkx's ``density``."""
    n = w.shape[-1]
    diag = torch.diagonal(w, dim1=-2, dim2=-1).sum(-1)
    return (w.sum(dim=(-2, -1)) - diag) / max(n * (n - 1), 1)


@fp32
def ncut_value(w: Tensor, labels: Tensor) -> Tensor:
    """(B,) normalized cut cut(A,B)/vol(A) + cut(A,B)/vol(B) of the split ``labels`` (B, N) bool."""
    a = labels.to(w.dtype)
    cut = torch.einsum("bi,bij,bj->b", a, w, 1.0 - a)
    d = degree(w)
    vol_a = (d * a).sum(-1)
    vol_b = (d * (1.0 - a)).sum(-1)
    return cut / vol_a.clamp_min(_TINY) + cut / vol_b.clamp_min(_TINY)


@fp32
def intra_inter_gap(w: Tensor, labels: Tensor) -> Tensor:
    """(B,) mean intra-cluster weight minus mean inter-cluster weight (diagonal excluded)."""
    a = labels.to(w.dtype)
    same = a.unsqueeze(-1) * a.unsqueeze(-2) + (1 - a).unsqueeze(-1) * (1 - a).unsqueeze(-2)
    eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    same_off = same - eye
    diff = 1.0 - same
    intra = (w * same_off).sum((-2, -1)) / same_off.sum((-2, -1)).clamp_min(1.0)
    inter = (w * diff).sum((-2, -1)) / diff.sum((-2, -1)).clamp_min(1.0)
    return intra - inter


# --------------------------------------------------------------------------- splits
def _canonical_sign(v: Tensor) -> Tensor:
    """Flip each sample's vector so its largest-magnitude entry is positive (eigenvectors have no sign)."""
    idx = v.abs().argmax(dim=-1, keepdim=True)
    sign = torch.sign(torch.gather(v, -1, idx))
    return v * torch.where(sign == 0, torch.ones_like(sign), sign)


@fp32
def split(y: Tensor, threshold: SplitRule = "mean") -> Tensor:
    """(B, N) bool side ``y > t``; a sample whose split leaves a side empty falls back to a rank split
    (the upper half by rank, which is the median split and never empty)."""
    n = y.shape[-1]
    if threshold == "zero":
        t = torch.zeros_like(y[:, :1])
    elif threshold == "mean":
        t = y.mean(dim=-1, keepdim=True)
    elif threshold == "median":
        t = y.median(dim=-1, keepdim=True).values
    else:
        raise ValueError(f"unknown split threshold {threshold!r}; choose zero, mean or median")
    labels = y > t
    count = labels.sum(-1, keepdim=True)
    bad = (count == 0) | (count == n)
    ranks = y.argsort(dim=-1, stable=True).argsort(dim=-1, stable=True)
    by_rank = ranks >= n // 2
    return torch.where(bad, by_rank, labels)


@dataclass
class Bipartition:
    """A two-way split of every sample's tokens.

    ``labels`` is True on the side where ``y`` is above the threshold; ``y`` is the relaxed cut
    indicator (Fiedler y = D^-1/2 z2, or the first principal component's projection), sign-fixed so
    its largest-magnitude entry is positive. ``lambda2``/``lambda3`` are eigenvalues of L_sym
    (None for the PCA split).
    """

    labels: Tensor
    y: Tensor
    lambda2: Tensor | None = None
    lambda3: Tensor | None = None
    iterations: int | None = None  # products power iteration used (None for eigh and PCA)

    @property
    def eigengap(self) -> Tensor | None:
        """lambda3 - lambda2: near zero means the Fiedler vector (and the cut) is ill-defined."""
        if self.lambda2 is None or self.lambda3 is None:
            return None
        return self.lambda3 - self.lambda2


@dataclass
class Spectrum:
    z: Tensor  # (B, N) eigenvector of L_sym for lambda2 (unit length, sign-fixed)
    y: Tensor  # (B, N) D^-1/2 z: the relaxed normalized-cut indicator
    lambda2: Tensor
    lambda3: Tensor
    iterations: int | None = None  # products of the operator power iteration used (None for eigh)
    residual: Tensor | None = None  # (B,) power iteration's final Ritz residual (None for eigh)


def batched_eigh(mat: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` of a batch of small symmetric matrices, robust on busy CPUs.

    On CPU it runs single-threaded: the matrices are too small for LAPACK threads to help, and with
    other processes on the cores the threaded path was measured going from 10 ms to 2.5 s for
    64 graphs of 64 tokens (threads spin-waiting on a descheduled sibling). MPS has no eigh.
    """
    if mat.device.type == "mps":
        vals, vecs = torch.linalg.eigh(mat.cpu())
        return vals.to(mat.device), vecs.to(mat.device)
    if mat.device.type != "cpu":
        return torch.linalg.eigh(mat)
    with single_thread():
        return torch.linalg.eigh(mat)


@fp32
def fiedler_eigh(w: Tensor, precision: Literal["auto", "fp32", "fp64"] = "auto",
                 gap_tol: float = 1e-4) -> Spectrum:
    """Fiedler vectors of all samples by one batched ``eigh`` of L_sym.

    ``precision="auto"`` computes in fp32 and, on CPU, redoes in fp64 only the samples whose
    eigenvalues around lambda2 are closer than ``gap_tol`` (finding them reads a value back, which
    is free on a CPU). On accelerators ``auto`` stays fp32: a sync per step would stall the queue.
    A tiny gap means the cut is ill-posed in any precision; fp64 only keeps the returned vector a
    true eigenvector.
    """
    if w.shape[-1] < 3:
        raise ValueError(f"a normalized cut needs at least 3 tokens, got {w.shape[-1]}")
    dtype = torch.float64 if precision == "fp64" else torch.float32
    wf = w.to(dtype)
    vals, vecs = batched_eigh(normalized_laplacian(wf))
    if precision == "auto" and w.device.type == "cpu":
        near = torch.minimum(vals[:, 2] - vals[:, 1], vals[:, 1] - vals[:, 0]) < gap_tol
        with deliberate_sync("CPU tensors only: no device queue to stall"):
            redo = bool(near.any())
            idx = near.nonzero().squeeze(-1) if redo else None
        if idx is not None:
            v64, e64 = batched_eigh(normalized_laplacian(w.index_select(0, idx).double()))
            vals = vals.index_put((idx,), v64.to(vals.dtype))
            vecs = vecs.index_put((idx,), e64.to(vecs.dtype))
    z = _canonical_sign(vecs[:, :, 1].float())
    inv = degree(w.float()).clamp_min(_TINY).rsqrt()
    y = z * inv
    return Spectrum(z=z, y=y, lambda2=vals[:, 1].float(), lambda3=vals[:, 2].float())


def symmetric_2x2_eigh(t: Tensor) -> tuple[Tensor, Tensor]:
    """``eigh`` of a batch of symmetric 2 x 2 matrices in closed form (ascending, like torch's).

    CUDA's ``eigh`` reads its error flags back to the host on every call; this is elementwise
    arithmetic: no solver, no sync. theta = (a + c)/2 -+ hypot((a - c)/2, b); the eigenvector of
    the larger one is (cos phi, sin phi) with phi = atan2(2b, a - c)/2.
    """
    a, b, c = t[:, 0, 0], 0.5 * (t[:, 0, 1] + t[:, 1, 0]), t[:, 1, 1]
    mid, rad = 0.5 * (a + c), torch.hypot(0.5 * (a - c), b)
    phi = 0.5 * torch.atan2(2.0 * b, a - c)
    cos, sin = torch.cos(phi), torch.sin(phi)
    vals = torch.stack([mid - rad, mid + rad], dim=-1)
    vecs = torch.stack([torch.stack([-sin, cos], dim=-1), torch.stack([cos, sin], dim=-1)], dim=-1)
    return vals, vecs


#: largest residual ``|M v - v T|`` (per unit vector, M = 2I - L_sym with eigenvalues in [0, 2]) at
#: which power iteration stops: near fp32's floor for these products, and far below the eigengaps
#: (>= 0.01) at which the cut is well defined, so the vector error (residual / gap) stays <= 1e-3
POWER_TOL = 1e-5


@fp32
def fiedler_power(w: Tensor, iters: int = 4096, generator: torch.Generator | None = None,
                  start: Tensor | None = None, tol: float = POWER_TOL) -> Spectrum:
    """Fiedler vectors by subspace iteration on ``M = 2I - L_sym`` with the trivial eigenvector
    (``sqrt(d)``) deflated; two vectors, so lambda3 (and the eigengap) come out too.

    Only matrix products: no solver, so cheaper than ``eigh`` for large N on accelerators. Plain
    iteration converges at (2 - lambda4) / (2 - lambda2) per product, i.e. ~1000 products at
    eigengaps near 0.01 (50 gave 0.83 label agreement with ``eigh`` there). So the operator is
    squared each round: round r applies ``M^(2^r)``, reaching ``2^(r+1) - 1`` products in r + 1
    rounds. After each round the residual of the Ritz pair is checked (one small read back, marked
    as a deliberate sync); iteration stops below ``tol`` or at ``iters`` products. The count used
    is in ``Spectrum.iterations``. ``start`` (B, N, 2) is the start block (maskers pass a
    global-batch draw of their mask context); else it is drawn from ``generator``, else from a fixed
    CPU seed.
    """
    b, n, _ = w.shape
    if n < 3:
        raise ValueError(f"a normalized cut needs at least 3 tokens, got {n}")
    w = w.float()
    d = degree(w).clamp_min(_TINY)
    inv = d.rsqrt()
    a = inv.unsqueeze(-1) * w * inv.unsqueeze(-2)  # eigenvalues of 2I - L_sym = I + A lie in [0, 2]
    u1 = l2_normalize(d.sqrt())  # (B, N) trivial eigenvector (eigenvalue 2 of I + A)
    eye = torch.eye(n, device=w.device, dtype=w.dtype)
    m = eye + a - 2.0 * u1.unsqueeze(-1) * u1.unsqueeze(-2)  # deflated: sqrt(d) maps to 0
    if start is not None:
        v = start.to(device=w.device, dtype=w.dtype)
    elif generator is not None:
        v = torch.randn(b, n, 2, generator=generator, device=generator.device, dtype=w.dtype).to(w.device)
    else:
        v = torch.randn(b, n, 2, generator=torch.Generator().manual_seed(0)).to(w.device)

    def deflate_orth(v: Tensor) -> Tensor:
        v = v - u1.unsqueeze(-1) * (u1.unsqueeze(1) @ v)
        v1 = l2_normalize(v[..., 0])
        v2 = v[..., 1] - (v1 * v[..., 1]).sum(-1, keepdim=True) * v1
        return torch.stack([v1, l2_normalize(v2)], dim=-1)

    v = deflate_orth(v)
    power, rounds = m, 0
    while True:
        v = deflate_orth(power @ v)  # round r applies M^(2^r): 2^(r+1) - 1 products so far
        rounds += 1
        mv = m @ v
        theta, rot = symmetric_2x2_eigh(v.transpose(1, 2) @ mv)  # Rayleigh-Ritz, ascending
        v, mv = v @ rot, mv @ rot
        # the Fiedler Ritz pair's residual: its vector error is at most residual / (lambda3 - lambda2)
        residual = (mv[..., 1] - theta[:, 1:] * v[..., 1]).norm(dim=-1)
        if 2 ** (rounds + 1) - 1 > iters:  # the next round would pass the cap
            break
        with deliberate_sync("power iteration: stop once every graph has converged (one read per round)"):
            done = bool((residual <= tol).all())
        if done:
            break
        power = power @ power
        power = power / power.norm(dim=(1, 2), keepdim=True).clamp_min(_TINY)  # keep fp32 in range
    z = _canonical_sign(l2_normalize(v[..., 1]))
    return Spectrum(z=z, y=z * inv, lambda2=2.0 - theta[:, 1], lambda3=2.0 - theta[:, 0],
                    iterations=2 ** rounds - 1, residual=residual)


@fp32
def principal_projection(x: Tensor) -> Tensor:
    """(B, N) projection of each sample's centred features on its first principal direction.

    Exact and deterministic (an ``eigh`` of the smaller of the N x N Gram and D x D covariance),
    unlike ``torch.pca_lowrank``, which draws from the global RNG.
    """
    x = x.float()
    xc = x - x.mean(dim=1, keepdim=True)
    n, dim = xc.shape[1], xc.shape[2]
    if n <= dim:
        vals, vecs = batched_eigh(xc @ xc.transpose(1, 2))
        p = vecs[:, :, -1] * vals[:, -1:].clamp_min(0).sqrt()
    else:
        _, vecs = batched_eigh(xc.transpose(1, 2) @ xc)
        p = (xc @ vecs[:, :, -1:]).squeeze(-1)
    return _canonical_sign(p)


def resolve_partition(method: str, num_tokens: int, device: torch.device) -> str:
    """``auto``: exact ``eigh`` (``ncut``) except on CUDA above :data:`CUDA_BATCHED_EIGH_MAX` tokens,
    where eigh runs one solver call per sample and power iteration is used instead."""
    if method != "auto":
        return method
    if device.type == "cuda" and num_tokens > CUDA_BATCHED_EIGH_MAX:
        return "power"
    return "ncut"


@fp32
def bipartition(w: Tensor, method: Literal["ncut", "power", "auto"] = "ncut", threshold: SplitRule = "mean",
                iters: int = 4096, generator: torch.Generator | None = None,
                precision: Literal["auto", "fp32", "fp64"] = "auto", start: Tensor | None = None) -> Bipartition:
    """Normalized-cut bipartition of every sample's graph (``eigh``, power iteration, or ``auto``:
    see :func:`resolve_partition`)."""
    method = resolve_partition(method, w.shape[-1], w.device)  # type: ignore[assignment]
    if method == "ncut":
        spec = fiedler_eigh(w, precision=precision)
    elif method == "power":
        spec = fiedler_power(w, iters=iters, generator=generator, start=start)
    else:
        raise ValueError(f"unknown partition method {method!r}; choose ncut, power or auto")
    return Bipartition(labels=split(spec.y, threshold), y=spec.y, lambda2=spec.lambda2, lambda3=spec.lambda3,
                       iterations=spec.iterations)


@fp32
def pca_bipartition(x: Tensor, threshold: SplitRule = "mean") -> Bipartition:
    """Split at the first principal component (the cheap NCut approximation of the SGIM code)."""
    y = principal_projection(x)
    return Bipartition(labels=split(y, threshold), y=y)


# --------------------------------------------------------------------------- one partition for all
@dataclass(frozen=True)
class PartitionSettings:
    """How token features become a two-way partition. The self-guided masker and ``maskkit analyze``
    both call :func:`partition` with one of these, so a cut in a training log and in an analysis
    mean the same (the analysis reports the settings it used)."""

    centre: bool = True  # subtract each sample's mean token
    remove_position: bool = True  # subtract a per-position mean (grids only; the caller supplies it)
    method: Literal["auto", "ncut", "power", "pca"] = "auto"  # see resolve_partition
    affinity: AffinityRule = "tokencut"
    tau: float = 0.2
    tau_quantile: float = 0.6  # 0 = use the fixed tau
    knn: int = 0
    min_neighbours: int = 3
    eps: float = 1e-5
    split: SplitRule = "mean"
    power_iters: int = 4096  # cap on power iteration's operator products (it stops when converged)

    def resolved(self, num_tokens: int, device: torch.device) -> PartitionSettings:
        """The same settings with ``auto`` replaced by the method that runs for these graphs."""
        if self.method != "auto":
            return self
        return dataclasses.replace(self, method=resolve_partition("auto", num_tokens, device))  # type: ignore[arg-type]


@dataclass
class Partition:
    """Result of :func:`partition`: prepared unit features, the graph (None for PCA) and the split."""

    x: Tensor  # (B, N, D) features after position removal, centring and normalisation
    w: Tensor | None  # (B, N, N) affinity
    bip: Bipartition

    @property
    def density(self) -> Tensor | None:
        return None if self.w is None else graph_density(self.w)


def partition(features: Tensor, settings: PartitionSettings, position_mean: Tensor | None = None,
              generator: torch.Generator | None = None, start: Tensor | None = None) -> Partition:
    """(B, N, D) raw features -> prepared features, affinity and bipartition under ``settings``.

    ``position_mean`` (N, D) is subtracted only when ``settings.remove_position`` is set. Power
    iteration starts from ``start`` (B, N, k) when given (the masker draws it for the global batch),
    else from ``generator``.
    """
    settings = settings.resolved(features.shape[1], features.device)
    offset = position_mean if settings.remove_position else None
    x = prepare_features(features, centre=settings.centre, position_mean=offset)
    if settings.method == "pca":
        return Partition(x=x, w=None, bip=pca_bipartition(x, settings.split))
    w = affinity_from_similarity(cosine_similarity(x), settings.affinity, tau=settings.tau,
                                 tau_quantile=settings.tau_quantile or None, knn=settings.knn,
                                 eps=settings.eps, min_neighbours=settings.min_neighbours)
    method: Literal["ncut", "power"] = "power" if settings.method == "power" else "ncut"
    return Partition(x=x, w=w, bip=bipartition(w, method, settings.split, iters=settings.power_iters,
                                               generator=generator, start=start))


__all__ = [
    "AffinityRule",
    "Bipartition",
    "Partition",
    "PartitionSettings",
    "Spectrum",
    "affinity_from_similarity",
    "batched_eigh",
    "bipartition",
    "cosine_affinity",
    "cosine_similarity",
    "degree",
    "fiedler_eigh",
    "fiedler_power",
    "graph_density",
    "intra_inter_gap",
    "knn_adjacency",
    "l2_normalize",
    "ncut_value",
    "normalized_laplacian",
    "offdiag_quantile",
    "offdiagonal",
    "partition",
    "pca_bipartition",
    "prepare_features",
    "principal_projection",
    "resolve_partition",
    "split",
    "symmetric_2x2_eigh",
]
