"""Token-clustering metrics of the self-guided MAE paper, for any model and modality.

Three layers, each usable on its own:

- metric functions on tensors (features (B, N, D), attention (B, H, L, L), masks (B, N)), each
  returning one value per sample (or per layer), batched, on any device;
- ``probe_metrics``: a cheap set of them on a fixed handful of samples, which the trainer logs every
  ``probe_every`` epochs;
- ``analyze_run``: every metric per layer for one or all checkpoints of a run, written to
  ``analysis.json`` plus plots (``maskkit analyze``).

docs/self-guided.md lists every metric with its definition and the paper figure it reproduces;
where the paper's normalisation is unknown the option is explicit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from maskkit.config_utils import ConfigError
from maskkit.errors import DataError
from maskkit.lab.analysis_plots import plot_analysis
from maskkit.lab.visualize import pick_samples
from maskkit.maskers import graph
from maskkit.maskers.base import Masker, MaskPlan, TrainingProgress, expected_random_iou
from maskkit.maskers.random import random_plan
from maskkit.maskers.signals import exploitation_rates
from maskkit.maskers.stats import mask_statistics
from maskkit.model.mae import MaskedAutoencoder
from maskkit.registry import build_masker
from maskkit.safe_io import write_text
from maskkit.tokens import TokenBatch
from maskkit.train.build import build_dataset
from maskkit.train.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_run_model,
    resolve_checkpoint_path,
)
from maskkit.train.runtime import autocast
from maskkit.train.step import build_context

_EPS = 1e-12


# =========================================================================== feature metrics
@graph.fp32
def similarity_matrix(features: Tensor) -> Tensor:
    """(B, N, N) cosine similarity of raw token features (the paper's M)."""
    x = graph.l2_normalize(features.float())
    return x @ x.transpose(1, 2)


@graph.fp32
def similarity_score(features: Tensor) -> Tensor:
    """(B, N) cosine of each token with the sample's mean token (polarised = two clear groups)."""
    f = features.float()
    return (graph.l2_normalize(f) * graph.l2_normalize(f.mean(dim=1, keepdim=True))).sum(-1)


@graph.fp32
def feature_variance(features: Tensor, normalize: bool = True) -> Tensor:
    """(B,) sigma_F = mean_i ||e_i - mean_j e_j||^2 on unit-length (default) or raw features."""
    f = features.float()
    if normalize:
        f = graph.l2_normalize(f)
    return (f - f.mean(dim=1, keepdim=True)).pow(2).sum(-1).mean(-1)


@graph.fp32
def similarity_variance(features: Tensor, include_diagonal: bool = False) -> Tensor:
    """(B,) sigma_s = variance of the pairwise cosines M_ij (off-diagonal unless asked)."""
    m = similarity_matrix(features)
    b, n, _ = m.shape
    vals = m.reshape(b, n * n) if include_diagonal else graph.offdiagonal(m)
    return vals.var(dim=1, unbiased=False)


#: the partition the analysis uses unless told otherwise: the default self-guided masker's
ANALYSIS_PARTITION = graph.PartitionSettings()


@graph.fp32
def similarity_gap(features: Tensor, settings: graph.PartitionSettings = ANALYSIS_PARTITION,
                   position_mean: Tensor | None = None) -> Tensor:
    """(B,) mu_intra - mu_inter of the cosine graph M under the bipartition ``graph.partition`` makes
    with ``settings`` (the masker's own function and settings object).

    The cut runs on prepared (position-removed, centred) features so that it is well-posed; the gap
    is measured on the raw cosines M, as in the paper's Fig. 3(a).
    """
    labels = graph.partition(features, settings, position_mean=position_mean).bip.labels
    return graph.intra_inter_gap(similarity_matrix(features), labels)


@graph.fp32
def fourier_high_frequency(features: Tensor, grid: tuple[int, ...] | None, band: float = 0.5) -> Tensor:
    """(B,) relative log amplitude of the high-frequency components of a feature map on a token grid.

    Features (B, N, D) are laid out on ``grid`` and Fourier-transformed over the grid axes; the
    amplitude is averaged over channels. The value is log(mean amplitude over frequencies whose
    largest normalised component |f| / 0.5 is >= ``band``) - log(amplitude at frequency 0): near 0
    the map is as rough as it is bright, very negative it is smooth (low-pass, as attention tends
    to make features). NaN without a grid.
    """
    b, n, d = features.shape
    if not grid or math.prod(grid) != n:
        return torch.full((b,), float("nan"))
    f = features.float().reshape(b, *grid, d).movedim(-1, 1)  # (B, D, *grid)
    dims = tuple(range(2, 2 + len(grid)))
    amp = torch.fft.fftn(f, dim=dims).abs().mean(1)  # (B, *grid)
    freqs = torch.meshgrid(*[torch.fft.fftfreq(g, device=amp.device).abs() / 0.5 for g in grid], indexing="ij")
    radius = torch.stack(freqs).amax(0)
    high = radius >= band
    if not bool(high.any()):
        return torch.full((b,), float("nan"))
    dc = amp.reshape(b, -1)[:, 0]
    return torch.log(amp[:, high].mean(1).clamp_min(_EPS)) - torch.log(dc.clamp_min(_EPS))


@graph.fp32
def token_relation_kl(reference: Tensor, other: Tensor, temperature: float = 1.0,
                      exclude_self: bool = True) -> Tensor:
    """(B,) mean_i KL(P_ref_i || P_other_i), P_i = softmax_j(M_ij / temperature).

    ``reference`` and ``other`` are features of the *same* inputs (e.g. the final and an earlier
    checkpoint at one layer). ``exclude_self`` drops j = i, whose cosine is always 1.
    """
    def log_rel(f: Tensor) -> Tensor:
        m = similarity_matrix(f) / temperature
        if exclude_self:
            eye = torch.eye(m.shape[-1], dtype=torch.bool, device=m.device)
            m = m.masked_fill(eye, float("-inf"))
        return torch.log_softmax(m, dim=-1)

    lp, lq = log_rel(reference), log_rel(other)
    p = lp.exp()
    kl = torch.where(p > 0, p * (lp - lq), torch.zeros_like(p)).sum(-1)
    return kl.mean(-1)


# =========================================================================== attention metrics
@graph.fp32
def token_attention(attn: Tensor, num_prefix: int = 0, renormalize: bool = True) -> Tensor:
    """(B, H, N, N) token-to-token part of (B, H, L, L) attention (prefix tokens such as CLS dropped),
    rows renormalised to sum to one unless ``renormalize`` is False."""
    a = attn.float()[:, :, num_prefix:, num_prefix:]
    if renormalize:
        a = a / a.sum(-1, keepdim=True).clamp_min(_EPS)
    return a


@graph.fp32
def attention_graph(attn: Tensor, num_prefix: int = 0) -> Tensor:
    """(B, N, N) head-averaged, symmetrised attention (A + A^T) / 2 with a zero diagonal."""
    a = token_attention(attn, num_prefix).mean(1)
    w = 0.5 * (a + a.transpose(1, 2))
    eye = torch.eye(w.shape[-1], dtype=torch.bool, device=w.device)
    return w.masked_fill(eye, 0.0)


@graph.fp32
def attention_gap(attn: Tensor, num_prefix: int = 0, threshold: graph.SplitRule = "mean") -> Tensor:
    """(B,) mu_intra - mu_inter of the attention graph under its own normalized-cut bipartition."""
    w = attention_graph(attn, num_prefix)
    labels = graph.bipartition(w, "ncut", threshold).labels
    return graph.intra_inter_gap(w, labels)


@graph.fp32
def mean_attention_distance(attn: Tensor, centres: Tensor, num_prefix: int = 0) -> Tensor:
    """(B,) sum_j A_ij ||p_i - p_j|| averaged over queries and heads (ViT's attention distance),
    with ``centres`` (N, k) or (B, N, k) token positions in input units (pixels, seconds, ...)."""
    a = token_attention(attn, num_prefix)
    c = centres.float()
    if c.dim() == 2:
        c = c.unsqueeze(0).expand(a.shape[0], -1, -1)
    dist = torch.cdist(c, c)
    return (a * dist.unsqueeze(1)).sum(-1).mean(dim=(1, 2))


@graph.fp32
def attention_nmi(attn: Tensor, num_prefix: int = 0) -> Tensor:
    """(B,) normalised mutual information between query and key of each head, averaged over heads.

    p(q=i, k=j) = A_ij / N (uniform queries); NMI = I(Q;K) / sqrt(H(Q) H(K)). Near 0: every query
    attends alike (global or collapsed attention); near 1: each query has its own keys.
    """
    a = token_attention(attn, num_prefix)
    n = a.shape[-1]
    pk = a.mean(dim=-2)  # (B, H, N) key marginal
    h_k = -torch.special.xlogy(pk, pk).sum(-1)
    h_k_given_q = -torch.special.xlogy(a, a).sum(-1).mean(-1)
    mutual = h_k - h_k_given_q
    nmi = mutual / (math.log(n) * h_k).clamp_min(_EPS).sqrt()
    return nmi.mean(dim=1)


@graph.fp32
def mask_token_variance(decoder_hidden: Tensor, mask: Tensor) -> Tensor:
    """(B,) mean squared distance of the decoder states at masked positions to their mean."""
    m = mask.float().unsqueeze(-1)
    h = decoder_hidden.float()
    mean = (h * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)
    return ((h - mean).pow(2).sum(-1) * m.squeeze(-1)).sum(1) / m.squeeze(-1).sum(1).clamp_min(1.0)


# =========================================================================== model passes
def encoder_layers(model: MaskedAutoencoder, tokens: TokenBatch) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield (layer, token features (B, N, D) after the final norm, attention (B, H, L, L)) for every
    encoder block, full input, one pass; nothing is kept, so memory stays at one layer's attention."""
    h = model._prefix_and_positions(tokens)
    for i, blk in enumerate(model.blocks):
        h, attn = blk.forward_with_attention(h)
        yield i, model.norm(h)[:, model.num_prefix:], attn


def decoder_layers(model: MaskedAutoencoder, tokens: TokenBatch, plan: MaskPlan
                   ) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield (layer, decoder states (B, N, Dd) after the decoder norm, attention (B, H, L, L)) for
    every decoder block, on the masked input of ``plan`` (visible tokens encoded, mask tokens filled in)."""
    h = model._decoder_input(model.forward_encoder(tokens, plan), tokens, plan)
    for i, blk in enumerate(model.decoder_blocks):
        h, attn = blk.forward_with_attention(h)
        yield i, model.decoder_norm(h)[:, model.num_prefix:], attn


#: metrics computed for every encoder AND decoder layer (each a (layers, B) tensor)
LAYER_METRICS = ("feature_var", "similarity_var", "gap_similarity", "gap_attention",
                 "attention_distance", "attention_nmi", "fourier_high")
ENCODER_METRICS = LAYER_METRICS
#: decoder-only metrics: mask-token variance per layer and the exploitation rates
DECODER_METRICS = (*LAYER_METRICS, "mask_token_var", "exploit_visible", "exploit_mask",
                   "exploit_visible_raw", "exploit_mask_raw")


def _position_mean(f: Tensor, settings: graph.PartitionSettings, tokens: TokenBatch) -> Tensor | None:
    """Per-position mean of the batch's features, for the partition's position removal (grids only)."""
    if not settings.remove_position or not tokens.layout.has_grid or tokens.positions.dim() != 2:
        return None
    if f.shape[0] < 2:  # the mean of one sample is the sample itself: nothing would be left to cut
        return None
    return f.float().mean(0)


def _layer_rows(rows: dict[str, list[Tensor]], f: Tensor, attn: Tensor, model: MaskedAutoencoder,
                tokens: TokenBatch, centres: Tensor, settings: graph.PartitionSettings) -> None:
    grid = tokens.layout.grid if tokens.layout.has_grid and tokens.positions.dim() == 2 else None
    rows["feature_var"].append(feature_variance(f))
    rows["similarity_var"].append(similarity_variance(f))
    rows["gap_similarity"].append(similarity_gap(f, settings, _position_mean(f, settings, tokens)))
    rows["gap_attention"].append(attention_gap(attn, model.num_prefix))
    rows["attention_distance"].append(mean_attention_distance(attn, centres, model.num_prefix))
    rows["attention_nmi"].append(attention_nmi(attn, model.num_prefix))
    rows["fourier_high"].append(fourier_high_frequency(f, grid).to(f.device))


@torch.no_grad()
def encoder_metrics(model: MaskedAutoencoder, tokens: TokenBatch, keep_features: bool = False,
                    settings: graph.PartitionSettings = ANALYSIS_PARTITION) -> tuple[dict[str, Tensor], list[Tensor]]:
    """Every encoder metric per layer: {name: (layers, B)} and, if asked, the per-layer features."""
    centres = model.tokenizer.token_centres(tokens)
    rows: dict[str, list[Tensor]] = {k: [] for k in LAYER_METRICS}
    feats: list[Tensor] = []
    for _, f, attn in encoder_layers(model, tokens):
        _layer_rows(rows, f, attn, model, tokens, centres, settings)
        if keep_features:
            feats.append(f.float().cpu())
    return {k: torch.stack(v).float().cpu() for k, v in rows.items()}, feats


@torch.no_grad()
def decoder_metrics(model: MaskedAutoencoder, tokens: TokenBatch, plan: MaskPlan, keep_features: bool = False,
                    settings: graph.PartitionSettings = ANALYSIS_PARTITION, layer_metrics: bool = True
                    ) -> dict[str, Tensor] | tuple[dict[str, Tensor], list[Tensor]]:
    """Every metric per decoder layer on the masked input of ``plan``: {name: (layers, B)} for the
    layer metrics and the mask-token variance, {name: (layers, 1)} for the exploitation rates
    (raw and per-key). With ``keep_features`` also the per-layer decoder states; without
    ``layer_metrics`` only the mask-token variance and exploitation rates (the cheap probe)."""
    centres = model.tokenizer.token_centres(tokens)
    rows: dict[str, list[Tensor]] = {k: [] for k in ((*LAYER_METRICS, "mask_token_var") if layer_metrics
                                                     else ("mask_token_var",))}
    attns: list[Tensor] = []
    feats: list[Tensor] = []
    for _, f, attn in decoder_layers(model, tokens, plan):
        if layer_metrics:
            _layer_rows(rows, f, attn, model, tokens, centres, settings)
        rows["mask_token_var"].append(mask_token_variance(f, plan.mask))
        attns.append(attn)
        if keep_features:
            feats.append(f.float().cpu())
    out = {k: torch.stack(v).float().cpu() for k, v in rows.items()}
    vis, msk = exploitation_rates(attns, plan.mask, model.num_prefix)
    vis_k, msk_k = exploitation_rates(attns, plan.mask, model.num_prefix, per_key_normalized=True)
    out.update({"exploit_visible_raw": vis.cpu().unsqueeze(-1), "exploit_mask_raw": msk.cpu().unsqueeze(-1),
                "exploit_visible": vis_k.cpu().unsqueeze(-1), "exploit_mask": msk_k.cpu().unsqueeze(-1)})
    return (out, feats) if keep_features else out


# =========================================================================== data
def probe_inputs(data: Any, num_samples: int) -> Tensor:
    """A fixed batch of inputs: evenly spaced samples of a dataset (several classes show up, and
    the same ones every time), the first samples of a tensor, or of an iterable of batches."""
    if isinstance(data, Tensor):
        return data[:num_samples]
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return pick_samples(data, num_samples)
    chunks, total = [], 0
    for batch in data:
        x = _first(batch)
        chunks.append(x)
        total += x.shape[0]
        if total >= num_samples:
            break
    if not chunks:
        raise DataError("cannot probe: no batches")
    return torch.cat(chunks)[:num_samples]


def _first(item: Any) -> Tensor:
    return item[0] if isinstance(item, (tuple, list)) else item


def _batches(x: Tensor, batch_size: int) -> Iterator[Tensor]:
    for i in range(0, x.shape[0], batch_size):
        yield x[i:i + batch_size]


# =========================================================================== probe (during training)
@torch.no_grad()
def probe_metrics(model: MaskedAutoencoder, data: Any, masker: Masker | None, mask_ratio: float, *,
                  device: torch.device | str | None = None, seed: int = 0,
                  amp_dtype: torch.dtype | None = None, num_samples: int = 32,
                  batch_size: int = 16) -> dict[str, float]:
    """Clustering metrics of the current model on a fixed set of samples (host floats).

    Keys: last-encoder-layer ``feature_var``, ``similarity_var``, ``gap_similarity``,
    ``gap_attention``; ``attention_distance`` and ``attention_nmi`` averaged over encoder layers;
    ``exploit_visible``/``exploit_mask`` (per-key normalised, mean over decoder layers, random masks)
    and their ``_raw`` forms; ``mask_token_var``. With a masker: ``mask_iou`` and
    ``mask_iou_random``, ``mask_position_sd`` and the random floor ``mask_position_sd_random``
    (grid layouts only), ``mask_clumping``. The model and masker are put back in their modes.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    x_all = probe_inputs(data, num_samples)
    model_mode = model.training
    masker_mode = masker.training if masker is not None else False
    model.eval()
    if masker is not None:
        masker.eval()
    generator = torch.Generator().manual_seed(seed)  # CPU: the same masks on every device
    enc: dict[str, list[Tensor]] = {}
    dec: dict[str, list[Tensor]] = {}
    masks: list[Tensor] = []
    layout = None
    stats_rows: list[dict[str, Tensor]] = []
    try:
        for x in _batches(x_all, batch_size):
            x = x.to(dev)
            with autocast(dev, amp_dtype):
                tokens = model.tokenize(x)
                e, _ = encoder_metrics(model, tokens)
                plan = random_plan(build_context(model, tokens, mask_ratio, generator, TrainingProgress()))
                d = decoder_metrics(model, tokens, plan, layer_metrics=False)
                if masker is not None:
                    mplan = _masker_plan(model, masker, tokens, mask_ratio, generator)
                    masks.append(mplan.mask.cpu())
                    layout = tokens.layout
                    stats_rows.append(_mask_stats(mplan, tokens))
            for k, v in e.items():
                enc.setdefault(k, []).append(v)
            for k, v in d.items():
                dec.setdefault(k, []).append(v)
    finally:
        model.train(model_mode)
        if masker is not None:
            masker.train(masker_mode)
    out: dict[str, float] = {}
    for k in ("feature_var", "similarity_var", "gap_similarity", "gap_attention"):
        out[k] = float(torch.cat(enc[k], dim=1)[-1].mean())
    for k in ("attention_distance", "attention_nmi"):
        out[k] = float(torch.cat(enc[k], dim=1).mean())
    for k in ("exploit_visible", "exploit_mask", "exploit_visible_raw", "exploit_mask_raw"):
        out[k] = float(torch.cat(dec[k], dim=1).mean())
    out["mask_token_var"] = float(torch.cat(dec["mask_token_var"], dim=1)[-1].mean())
    if masks:
        out.update(_mask_summary(torch.cat(masks), layout, stats_rows))
    return out


def _masker_plan(model: MaskedAutoencoder, masker: Masker, tokens: TokenBatch, mask_ratio: float,
                 generator: torch.Generator) -> MaskPlan:

    progress = masker.last_progress
    ctx = build_context(model, tokens, mask_ratio, generator, progress)
    return masker(ctx)


def _mask_stats(plan: MaskPlan, tokens: TokenBatch) -> dict[str, Tensor]:

    return mask_statistics(plan, tokens.layout, tokens.positions)


def _mask_summary(masks: Tensor, layout: Any, rows: list[dict[str, Tensor]]) -> dict[str, float]:
    n_samples, n = masks.shape
    n_mask = int(masks[0].sum())
    out = {"mask_iou": float(torch.stack([r["iou"] for r in rows]).nanmean()),
           "mask_iou_random": expected_random_iou(n, n_mask),
           "mask_clumping": float(torch.stack([r["clumping"] for r in rows]).mean())}
    if layout is not None and layout.has_grid:
        freq = masks.float().mean(0)
        r = n_mask / n
        out["mask_position_sd"] = float(freq.std(unbiased=False))
        out["mask_position_sd_random"] = math.sqrt(r * (1 - r) / n_samples)
    return out


# =========================================================================== analyze a run
def _checkpoint_paths(run_dir: Path, which: Literal["last", "all"]) -> list[Path]:

    if which == "last" or run_dir.is_file():
        return [resolve_checkpoint_path(run_dir)]
    paths = list_checkpoints(run_dir)
    if not paths:
        raise CheckpointError(f"{run_dir}: run directory has no checkpoints")
    return paths


def _epoch_of(ckpt: dict[str, Any]) -> int:
    pos = ckpt.get("position")
    if isinstance(pos, dict) and "epoch" in pos:
        return int(pos["epoch"])
    return int(ckpt.get("epoch", -1))


@torch.no_grad()
def _layer_metrics(model: MaskedAutoencoder, x_all: Tensor, batch_size: int, dev: torch.device, ratio: float,
                   seed: int, settings: graph.PartitionSettings) -> tuple[dict, dict, list[Tensor], list[Tensor]]:
    """Mean per-layer encoder and decoder metrics over ``x_all``, and each layer's features (for the KL)."""
    generator = torch.Generator().manual_seed(seed)  # CPU: the same masks on every device and checkpoint
    enc: dict[str, list[Tensor]] = {}
    dec: dict[str, list[Tensor]] = {}
    feats: list[list[Tensor]] = []
    dfeats: list[list[Tensor]] = []
    for x in _batches(x_all, batch_size):
        tokens = model.tokenize(x.to(dev))
        e, f = encoder_metrics(model, tokens, keep_features=True, settings=settings)
        plan = random_plan(build_context(model, tokens, ratio, generator, TrainingProgress()))
        d, df = decoder_metrics(model, tokens, plan, keep_features=True, settings=settings)
        for k, v in e.items():
            enc.setdefault(k, []).append(v)
        for k, v in d.items():
            dec.setdefault(k, []).append(v)
        feats.append(f)
        dfeats.append(df)
    enc_mean = {k: torch.cat(v, dim=1).nanmean(1).tolist() for k, v in enc.items()}
    dec_mean = {k: torch.cat(v, dim=1).nanmean(1).tolist() for k, v in dec.items()}
    per_layer = [torch.cat([fb[i] for fb in feats]) for i in range(len(feats[0]))]
    dec_layer = [torch.cat([fb[i] for fb in dfeats]) for i in range(len(dfeats[0]))]
    return enc_mean, dec_mean, per_layer, dec_layer


def analyze_run(run: str | Path, checkpoints: Literal["last", "all"] = "last", batches: int = 2,
                batch_size: int = 16, out: str | Path | None = None, device: str | torch.device = "cpu",
                seed: int = 0, data: str | None = None, plots: bool = True,
                partition: graph.PartitionSettings | None = None) -> dict[str, Any]:
    """Per-layer clustering metrics of a run's checkpoints on the same fixed samples.

    Writes ``analysis.json`` (and PNG plots) to ``out`` (default ``RUN/analysis``) and returns the
    same dict: ``checkpoints`` is a list (epoch order) of {path, epoch, encoder: {metric: [per
    layer]}, decoder: {metric: [per layer]}, kl_to_final: [per encoder layer], decoder_kl_to_final:
    [per decoder layer]}; ``clusters`` holds the final model's bipartition of a few samples for
    pictures; ``partition`` the settings of every cut (the run's self-guided masker's unless
    ``partition`` is given, else the default masker's).
    """

    run_path = Path(run)
    if checkpoints not in ("last", "all"):

        raise ConfigError(f"`checkpoints` must be last or all, got {checkpoints!r}")
    if batches < 1 or batch_size < 1:

        raise ConfigError(f"`batches` and `batch_size` must be >= 1, got {batches} and {batch_size}")
    dev = torch.device(device)
    # last.pt usually repeats the newest periodic checkpoint: keep one file per epoch (the later wins)
    by_epoch: dict[int, Path] = {}
    for p in _checkpoint_paths(run_path, checkpoints):
        by_epoch[_epoch_of(load_checkpoint(p))] = p
    epochs = sorted(by_epoch)
    final_model, modality, config, final_ckpt = load_run_model(by_epoch[epochs[-1]], dev)
    dataset = build_dataset(modality, data if data is not None else config.data, train=False,
                            seed=config.seed)
    x_all = probe_inputs(dataset, batches * batch_size)
    ratio = config.mask_ratio if config.mask_ratio is not None else modality.default_mask_ratio
    settings = partition if partition is not None else _run_partition(config)

    def run_model(model: MaskedAutoencoder) -> tuple[dict, dict, list[Tensor], list[Tensor]]:
        return _layer_metrics(model, x_all, batch_size, dev, ratio, seed, settings)

    final_enc, final_dec, final_feats, final_dfeats = run_model(final_model)
    results = []
    for epoch in epochs:  # one model in memory besides the final one
        if epoch == epochs[-1]:
            enc, dec, feats, dfeats = final_enc, final_dec, final_feats, final_dfeats
        else:
            model = load_run_model(by_epoch[epoch], dev)[0]
            enc, dec, feats, dfeats = run_model(model)
            del model
        kl = [float(token_relation_kl(final_feats[i], feats[i]).mean()) for i in range(len(feats))]
        dkl = [float(token_relation_kl(final_dfeats[i], dfeats[i]).mean()) for i in range(len(dfeats))]
        results.append({"path": str(by_epoch[epoch]), "epoch": epoch, "encoder": enc, "decoder": dec,
                        "kl_to_final": kl, "decoder_kl_to_final": dkl})
    result: dict[str, Any] = {
        "run": str(run_path),
        "modality": config.modality,
        "masker": config.masker,
        "mask_ratio": ratio,
        "num_samples": int(x_all.shape[0]),
        "encoder_layers": final_model.depth,
        "decoder_layers": len(final_model.decoder_blocks),
        "partition": {**asdict(settings), "position_mean": (
            f"per-position mean of each batch of {batch_size} analysed samples" if settings.remove_position
            else "not removed")},
        "checkpoints": results,
        "clusters": _cluster_pictures(final_model, config, final_ckpt, x_all[:8].to(dev), ratio, seed, settings),
    }
    return _write_analysis(result, run_path, out, plots)


def _write_analysis(result: dict[str, Any], run_path: Path, out: str | Path | None, plots: bool) -> dict[str, Any]:
    """``analysis.json`` (and the plots) in ``out``, default ``RUN/analysis``."""
    base = run_path if run_path.is_dir() else run_path.parent
    if base.name == "checkpoints":
        base = base.parent
    out_dir = Path(out) if out is not None else base / "analysis"
    out_dir.mkdir(parents=True, exist_ok=True)
    result["out_dir"] = str(out_dir)
    result = _finite_or_none(result)
    write_text(out_dir / "analysis.json", json.dumps(result, indent=1))
    if plots:

        result["plots"] = [str(p) for p in plot_analysis(result, out_dir)]
        write_text(out_dir / "analysis.json", json.dumps(result, indent=1))
    return result


def _run_partition(config: Any) -> graph.PartitionSettings:
    """The run's self-guided masker's partition settings, else the default masker's."""
    if config.masker == "self-guided":
        return build_masker(config.masker, config.masker_options).config.partition_settings()
    return ANALYSIS_PARTITION


def _finite_or_none(value: Any) -> Any:
    """NaN / inf -> None, so analysis.json is strict JSON (metrics that do not apply are null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _cluster_pictures(model: MaskedAutoencoder, config: Any, ckpt: dict[str, Any], x: Tensor,
                      mask_ratio: float, seed: int, settings: graph.PartitionSettings) -> dict[str, Any]:
    """Token positions and (B, N) maps for pictures: the final model's bipartition at the last layer,
    and, for a self-guided run, the masker's own maps (cluster, informed mask, hints)."""
    tokens = model.tokenize(x)
    centres = model.tokenizer.token_centres(tokens)
    feats = model.token_features(tokens, -1)
    labels = graph.partition(feats, settings, position_mean=_position_mean(feats, settings, tokens)).bip.labels
    maps: dict[str, Any] = {"bipartition": labels.long().tolist()}
    if config.masker == "self-guided":

        masker = build_masker(config.masker, config.masker_options)
        if "masker" in ckpt:
            masker.load_state_dict(ckpt["masker"], strict=False)
        masker.eval()
        generator = torch.Generator(device=x.device).manual_seed(seed)
        ctx = build_context(model, tokens, mask_ratio, generator, masker.last_progress)
        for key, value in masker.explain(ctx).items():
            if key in ("cluster", "informed", "hints", "mask"):
                maps[f"masker_{key}"] = value.long().tolist()
    out = {"positions": centres.float().cpu().tolist(), "grid": list(tokens.layout.grid or ()), "maps": maps}
    if x.dim() == 4 and len(tokens.layout.grid or ()) == 2:  # pictures: the maps are drawn over them
        out["pictures"] = display_pictures(x)
    return out


def display_pictures(x: Tensor) -> list:
    """(B, C, H, W) model inputs -> (B, H, W, 1 or 3) nested lists in [0, 1] (each picture stretched
    to its own range; other channel counts shown as their mean), rounded to 3 decimals."""
    x = x.detach().float().cpu()
    if x.shape[1] != 3:
        x = x.mean(dim=1, keepdim=True)
    flat = x.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    shown = ((x - lo) / (hi - lo).clamp_min(1e-6)).permute(0, 2, 3, 1)
    return (shown * 1000).round().div(1000).tolist()


__all__ = [
    "analyze_run",
    "attention_gap",
    "attention_graph",
    "attention_nmi",
    "decoder_layers",
    "decoder_metrics",
    "encoder_layers",
    "encoder_metrics",
    "exploitation_rates",
    "feature_variance",
    "fourier_high_frequency",
    "mask_token_variance",
    "mean_attention_distance",
    "probe_inputs",
    "probe_metrics",
    "similarity_gap",
    "similarity_matrix",
    "similarity_score",
    "similarity_variance",
    "token_attention",
    "token_relation_kl",
]
