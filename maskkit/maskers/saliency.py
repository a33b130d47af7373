"""Saliency masking: hide the tokens that stand out from their sample by low-level statistics.

A model-free baseline for maskers that claim to read what a model has learned (self-guided,
attention): if hiding the most *conspicuous* tokens covers the object as well, the learned masker's
coverage says nothing about learning. Two classic bottom-up saliency measures, computed on each
token's raw content (``TokenBatch.targets``: pixels of a patch, a spectrogram cell, a point group),
so it works on every modality's tokens:

- ``contrast`` (Itti, Koch & Niebur 1998, in its global form): the squared distance of a token's
  content from the sample's mean token, after standardising each content dimension over the
  sample's tokens. Tokens unlike the rest of their sample score highest.
- ``spectral_residual`` (Hou & Zhang, CVPR 2007), for 2-D token grids: the per-token mean content
  forms a small picture; its log amplitude spectrum minus a 3x3 local average of it (the "residual"),
  recombined with the original phase and squared, gives a map that is high where the picture is
  unexpected. Tokens are then ranked by that map.

Ties (a perfectly uniform sample) are broken by a tiny random jitter drawn from the mask context,
so the count stays exact and the draw is the global batch's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from maskkit.maskers.base import MaskContext, Masker, MaskPlan, exact_topk_plan

REFERENCES = ("Itti, Koch, Niebur, A model of saliency-based visual attention, IEEE TPAMI 1998; "
              "Hou, Zhang, Saliency detection: a spectral residual approach, CVPR 2007")


@dataclass(frozen=True)
class SaliencyConfig:
    """``method``: ``contrast`` (any tokens) or ``spectral_residual`` (2-D token grids only)."""

    method: Literal["contrast", "spectral_residual"] = "contrast"


def contrast_saliency(targets: Tensor) -> Tensor:
    """(B, N, P) raw token content -> (B, N) squared distance from the sample's mean token, each
    content dimension standardised over the sample's tokens (so no single channel dominates)."""
    x = targets.float().flatten(2)
    centred = x - x.mean(dim=1, keepdim=True)
    scale = centred.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
    return (centred / scale).pow(2).mean(dim=2)


def spectral_residual_saliency(targets: Tensor, grid: tuple[int, int]) -> Tensor:
    """(B, N, P) token content on an (h, w) grid -> (B, N) spectral-residual saliency (Hou & Zhang)."""
    b = targets.shape[0]
    picture = targets.float().flatten(2).mean(dim=2).view(b, 1, *grid)
    # shifted to a minimum of 1: the DC amplitude stays well away from 0, where its log would be noise
    picture = picture - picture.amin(dim=(2, 3), keepdim=True) + 1.0
    spectrum = torch.fft.fft2(picture)
    log_amplitude = torch.log(spectrum.abs().clamp_min(1e-8))
    residual = log_amplitude - F.avg_pool2d(log_amplitude, 3, stride=1, padding=1, count_include_pad=False)
    phase = torch.angle(spectrum)
    saliency = torch.fft.ifft2(torch.exp(torch.complex(residual, phase))).abs().pow(2)
    return saliency.view(b, -1)


class SaliencyMasker(Masker):
    name = "saliency"
    description = ("Model-free baseline: hide the tokens that stand out most from their sample "
                   "(contrast to the sample's mean token, or a spectral-residual map on 2-D grids).")
    reference = REFERENCES
    Config = SaliencyConfig

    def plan(self, ctx: MaskContext) -> MaskPlan:
        if ctx.tokens is None:
            raise RuntimeError("the saliency masker needs the tokens in the mask context")
        targets = ctx.tokens.targets
        if self.config.method == "spectral_residual":
            grid = ctx.layout.grid or ()
            if len(grid) != 2:
                raise ValueError(f"`masker.method` spectral_residual needs a 2-D token grid, got {ctx.layout.axes}")
            scores = spectral_residual_saliency(targets, (int(grid[0]), int(grid[1])))
        else:
            scores = contrast_saliency(targets)
        scores = scores / scores.amax(dim=1, keepdim=True).clamp_min(1e-12)  # jitter stays a tie-breaker
        return exact_topk_plan(scores, ctx.n_mask, ctx)


__all__ = ["SaliencyConfig", "SaliencyMasker", "contrast_saliency", "spectral_residual_saliency"]
