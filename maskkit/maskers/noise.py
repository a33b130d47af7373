"""Filtered-noise masks (ColorMAE): white noise on the token grid, filtered, top values hidden.

The filter's frequency response sets the mask's texture: red (low-pass) gives large blobs, blue
(high-pass) isolated, evenly spread tokens, green (band-pass) medium clusters spread evenly (the
paper's best), purple (band-stop) a mix of blobs and isolated tokens. Noise is generated on the
fly for any grid rank (1-D sequences, (h, w) images, (time, freq) spectrograms, (t, h, w) video) by
filtering in the Fourier domain; the grid is padded by 3 sigma before filtering and cropped after,
so masks do not wrap around the edges. No pattern bank, no parameters, no image dependence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext, Masker, MaskPlan
from maskkit.tokens import TokenLayout

REFERENCE = ("Hinojosa, Liu, Ghanem, ColorMAE: Exploring data-independent masking strategies in "
             "MAEs, ECCV 2024")


def _check_axis_scale(axis_scale: tuple[float, ...]) -> None:
    if any(s <= 0 for s in axis_scale):
        raise ConfigError(f"`masker.axis_scale` values must be > 0, got {axis_scale}")


@dataclass(frozen=True)
class SingleSigmaConfig:
    """``sigma`` in token units; ``axis_scale`` multiplies it per grid axis (empty: 1 for every axis)."""

    sigma: float = 2.0
    axis_scale: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise ConfigError(f"`masker.sigma` must be > 0, got {self.sigma}")
        _check_axis_scale(self.axis_scale)

    def sigmas(self) -> tuple[float, ...]:
        return (self.sigma,)


@dataclass(frozen=True)
class BlueConfig(SingleSigmaConfig):
    """Blue's blur is narrow: sigma 0.5 gives the most evenly spread masks on 2-D grids."""

    sigma: float = 0.5


@dataclass(frozen=True)
class BandConfig:
    """Difference of Gaussians: ``sigma_low`` < ``sigma_high`` (token units; the public band-pass
    re-implementation uses 1 and 3, the paper's values are not published)."""

    sigma_low: float = 1.0
    sigma_high: float = 3.0
    axis_scale: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.sigma_low < self.sigma_high:
            raise ConfigError(f"masker options need 0 < `masker.sigma_low` < `masker.sigma_high`, got "
                              f"`sigma_low`={self.sigma_low}, `sigma_high`={self.sigma_high}")
        _check_axis_scale(self.axis_scale)

    def sigmas(self) -> tuple[float, ...]:
        return (self.sigma_low, self.sigma_high)


def axis_sigmas(sigma: float, rank: int, axis_scale: tuple[float, ...]) -> tuple[float, ...]:
    if not axis_scale:
        return (sigma,) * rank
    if len(axis_scale) != rank:
        raise ConfigError(f"`masker.axis_scale` has {len(axis_scale)} values but the token grid "
                          f"has {rank} axes")
    return tuple(sigma * s for s in axis_scale)


def gaussian_response(shape: tuple[int, ...], sigmas: tuple[float, ...], device: torch.device) -> Tensor:
    """Frequency response of a sampled Gaussian blur on an rfftn grid of ``shape``.

    The continuous Fourier transform of a unit-mass Gaussian is ``exp(-2 pi^2 sigma^2 f^2)`` with
    f in cycles per token; separable, so per-axis exponents add up.
    """
    exponent = torch.zeros((), device=device)
    rank = len(shape)
    for axis, (n, sigma) in enumerate(zip(shape, sigmas, strict=True)):
        last = axis == rank - 1
        f = torch.fft.rfftfreq(n, device=device) if last else torch.fft.fftfreq(n, device=device)
        view = [1] * rank
        view[axis] = f.numel()
        exponent = exponent + (sigma * f).pow(2).reshape(view)
    return torch.exp(-2.0 * math.pi**2 * exponent)


def filtered_noise(noise: Tensor, response: Tensor, grid: tuple[int, ...], pads: tuple[int, ...]) -> Tensor:
    """Filter (B, *padded) noise with an rfftn-domain response, crop the padding, flatten to (B, N)."""
    rank = len(grid)
    dims = tuple(range(1, rank + 1))
    spectrum = torch.fft.rfftn(noise, dim=dims)
    field = torch.fft.irfftn(spectrum * response, s=noise.shape[1:], dim=dims)
    for axis, (n, pad) in enumerate(zip(grid, pads, strict=True)):
        field = field.narrow(axis + 1, pad, n)
    return field.reshape(noise.shape[0], -1)


class FilteredNoiseMasker(Masker):
    """Shared machinery; subclasses choose the response through ``colour``."""
    design_budget = (300, "ColorMAE reports 300-1600 epochs")

    needs_grid = True
    reference = REFERENCE
    colour: ClassVar[str] = ""

    def response(self, shape: tuple[int, ...], sigma_sets: list[tuple[float, ...]],
                 device: torch.device) -> Tensor:
        gauss = [gaussian_response(shape, s, device) for s in sigma_sets]
        if self.colour == "red":
            return gauss[0]
        if self.colour == "blue":
            return 1.0 - gauss[0]
        if self.colour == "green":
            return gauss[0] - gauss[1]
        if self.colour == "purple":  # white minus green: high-pass(sigma_low) + low-pass(sigma_high)
            return 1.0 - gauss[0] + gauss[1]
        raise ValueError(f"unknown noise colour {self.colour!r}")

    def check_layout(self, layout: TokenLayout) -> None:
        super().check_layout(layout)
        axis_sigmas(1.0, len(layout.grid or ()), self.config.axis_scale)  # fail at build time

    def noise_field(self, ctx: MaskContext) -> Tensor:
        """(B, N) filtered noise, one independent map per sample."""
        grid = tuple(ctx.layout.grid or ())
        rank = len(grid)
        sigma_sets = [axis_sigmas(s, rank, self.config.axis_scale) for s in self.config.sigmas()]
        widest = [max(sigmas[a] for sigmas in sigma_sets) for a in range(rank)]
        pads = tuple(int(math.ceil(3 * w)) if n > 1 else 0 for n, w in zip(grid, widest, strict=True))
        padded = tuple(n + 2 * p for n, p in zip(grid, pads, strict=True))
        noise = ctx.normal(ctx.batch_size, *padded)  # global-batch draw under DDP
        return filtered_noise(noise, self.response(padded, sigma_sets, ctx.device), grid, pads)

    def plan(self, ctx: MaskContext) -> MaskPlan:
        return MaskPlan.from_scores(self.noise_field(ctx), ctx.n_mask)


class RedNoiseMasker(FilteredNoiseMasker):
    name = "noise-red"
    colour = "red"
    description = "ColorMAE red noise: low-pass (blurred) white noise; large contiguous masked blobs."
    Config = SingleSigmaConfig


class BlueNoiseMasker(FilteredNoiseMasker):
    name = "noise-blue"
    colour = "blue"
    description = "ColorMAE blue noise: high-pass (noise minus blur); isolated, evenly spread masked tokens."
    Config = BlueConfig


class GreenNoiseMasker(FilteredNoiseMasker):
    name = "noise-green"
    colour = "green"
    description = "ColorMAE green noise: band-pass (difference of Gaussians); medium clusters spread evenly."
    Config = BandConfig


class PurpleNoiseMasker(FilteredNoiseMasker):
    name = "noise-purple"
    colour = "purple"
    description = "ColorMAE purple noise: band-stop (noise minus green); blobs mixed with isolated tokens."
    Config = BandConfig
