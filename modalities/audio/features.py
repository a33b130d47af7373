"""Waveform -> log-mel spectrogram, written in torch: resampling, mel filterbank, framing.

Conventions (documented in docs/modalities/audio.md):
- resampling is windowed-sinc polyphase (Hann window, ``lowpass_width`` zero crossings, cut-off at
  ``rolloff`` x the lower Nyquist frequency), so any rational rate ratio is exact in time;
- frames are taken without centring (Kaldi's ``snip_edges``): ``1 + (len - win) // hop`` frames,
  each multiplied by a symmetric Hann window and zero-padded to ``n_fft``;
- the power spectrum ``|X|^2`` goes through triangular mel filters (peak 1, HTK mel scale by
  default, Slaney's scale and area normalisation on request), then ``log(mel + 1e-6)``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from maskkit.threads import single_thread

MelScale = Literal["htk", "slaney"]
LOG_FLOOR = 1e-6



# --- resampling -------------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _sinc_kernel(orig: int, new: int, lowpass_width: int, rolloff: float) -> tuple[Tensor, int]:
    """(new, 1, K) polyphase kernels for reduced rates ``orig -> new`` and the left padding.

    Output sample ``j = k*new + p`` sits at time ``k + p/new`` (in units of ``1/gcd`` seconds);
    input sample ``n = k*orig + m`` sits at ``k + m/orig``. Their distance depends on (p, m) only,
    so one strided convolution computes every phase at once.
    """
    cutoff = rolloff * min(orig, new) / 2.0  # cycles per time unit
    half_width = lowpass_width / (2.0 * cutoff)  # time units either side of the output sample
    pad = math.ceil(half_width * orig)
    m = torch.arange(-pad, orig + pad + 1, dtype=torch.float64)  # input offsets within a block
    p = torch.arange(new, dtype=torch.float64).unsqueeze(1)
    t = p / new - m.unsqueeze(0) / orig  # (new, K) time between output phase and input sample
    window = torch.where(t.abs() <= half_width, torch.cos(math.pi * t / (2.0 * half_width)) ** 2, 0.0)
    # sum over inputs of (2 fc / orig) sinc(2 fc t) is ~1 at DC
    kernel = (2.0 * cutoff / orig) * torch.special.sinc(2.0 * cutoff * t) * window
    return kernel.float().unsqueeze(1), pad


def resample(wave: Tensor | np.ndarray, orig_sr: int, new_sr: int, lowpass_width: int = 8,
             rolloff: float = 0.95) -> Tensor:
    """Resample the last axis of ``wave`` from ``orig_sr`` to ``new_sr`` Hz (band-limited)."""
    x = torch.as_tensor(wave, dtype=torch.float32)
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    if orig == new:
        return x.clone()
    kernel, pad = _sinc_kernel(orig, new, lowpass_width, rolloff)
    lead = x.shape[:-1]
    length = x.shape[-1]
    out_len = math.ceil(length * new / orig)
    flat = x.reshape(-1, 1, length)
    blocks = math.ceil(out_len / new)
    right = blocks * orig + kernel.shape[-1] - pad - length
    flat = torch.nn.functional.pad(flat, (pad, max(0, right)))
    y = torch.nn.functional.conv1d(flat, kernel, stride=orig)  # (R, new, blocks+)
    y = y[..., :blocks].transpose(1, 2).reshape(flat.shape[0], -1)[:, :out_len]
    return y.reshape(*lead, out_len)


# --- mel filterbank ---------------------------------------------------------------------------
def hz_to_mel(f: Tensor | float, scale: MelScale = "htk") -> Tensor:
    f = torch.as_tensor(f, dtype=torch.float64)
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    # Slaney (Auditory Toolbox): linear below 1 kHz, logarithmic above
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    log_part = min_log_mel + torch.log(f.clamp_min(1e-9) / min_log_hz) / logstep
    return torch.where(f < min_log_hz, f / f_sp, log_part)


def mel_to_hz(m: Tensor | float, scale: MelScale = "htk") -> Tensor:
    m = torch.as_tensor(m, dtype=torch.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(m < min_log_mel, m * f_sp, min_log_hz * torch.exp(logstep * (m - min_log_mel)))


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None, scale: MelScale = "htk") -> Tensor:
    """(n_fft//2 + 1, n_mels) triangular filters, centres equally spaced on the mel scale.

    Triangles are linear in Hz between neighbouring centres (peak 1). With ``scale="slaney"``
    each filter is also divided by its bandwidth (Slaney's equal-area normalisation).
    """
    f_max = sample_rate / 2.0 if f_max is None else f_max
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(float(hz_to_mel(f_min, scale)), float(hz_to_mel(f_max, scale)), n_mels + 2,
                          dtype=torch.float64)
    edges = mel_to_hz(mels, scale)  # (n_mels + 2,)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    f = freqs.unsqueeze(1)
    rising = (f - lower) / (centre - lower)
    falling = (upper - f) / (upper - centre)
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if scale == "slaney":
        fb = fb * (2.0 / (upper - lower))
    return fb.float()


def frame_params(sample_rate: int, win_ms: float, hop_ms: float) -> tuple[int, int]:
    """Window and hop lengths in samples."""
    return max(1, round(sample_rate * win_ms / 1000.0)), max(1, round(sample_rate * hop_ms / 1000.0))


def choose_n_fft(win_length: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                 f_max: float | None = None, scale: MelScale = "htk") -> int:
    """Smallest power of two >= the window such that every mel filter covers an FFT bin."""
    n_fft = 1 << max(0, (win_length - 1).bit_length())
    while n_fft < 1 << 15:
        fb = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max, scale)
        if bool((fb.max(dim=0).values > 0).all()):
            return n_fft
        n_fft *= 2
    return n_fft


class LogMel(torch.nn.Module):
    """Waveform (..., samples) -> log-mel (..., frames, n_mels); the filterbank is a buffer."""

    def __init__(self, sample_rate: int, n_mels: int, win_ms: float = 25.0, hop_ms: float = 10.0,
                 n_fft: int | None = None, f_min: float = 0.0, f_max: float | None = None,
                 scale: MelScale = "htk") -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.win_length, self.hop_length = frame_params(sample_rate, win_ms, hop_ms)
        self.n_fft = n_fft or choose_n_fft(self.win_length, n_mels, sample_rate, f_min, f_max, scale)
        if self.n_fft < self.win_length:
            raise ValueError(f"n_fft {self.n_fft} is shorter than the window ({self.win_length} samples)")
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=False), persistent=False)
        self.register_buffer("filters", mel_filterbank(n_mels, self.n_fft, sample_rate, f_min, f_max, scale),
                             persistent=False)

    def num_samples(self, num_frames: int) -> int:
        """Samples that give exactly ``num_frames`` frames."""
        return self.win_length + (num_frames - 1) * self.hop_length

    def forward(self, wave: Tensor) -> Tensor:
        wave = wave.float()
        if wave.shape[-1] < self.win_length:
            wave = torch.nn.functional.pad(wave, (0, self.win_length - wave.shape[-1]))
        frames = wave.unfold(-1, self.win_length, self.hop_length) * self.window  # (..., T, win)
        spec = torch.fft.rfft(frames, n=self.n_fft, dim=-1)
        power = spec.real.square() + spec.imag.square()
        return torch.log(power @ self.filters + LOG_FLOOR)


__all__ = ["LogMel", "choose_n_fft", "frame_params", "hz_to_mel", "mel_filterbank", "mel_to_hz", "resample",
           "single_thread"]
