"""Training-step benchmark: samples/s, tokens/s, peak memory and model-FLOPs utilisation.

Timing excludes warm-up steps and synchronises the device around the timed region only.
FLOPs are counted once with torch's FlopCounterMode on the real step (encoder, decoder, masker
feature passes included), so MFU reflects what the step actually computes.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass

import torch

from maskkit.lab.bench_reference import PlainMAE
from maskkit.maskers.base import TrainingProgress, num_visible
from maskkit.train.build import RunParts, build_run
from maskkit.train.config import TrainConfig
from maskkit.train.runtime import autocast, resolve_device, resolve_precision, tf32_for_fp32_runs
from maskkit.train.step import TrainingModule

#: dense bf16 peak TFLOP/s per GPU model (vendor figures), used for MFU when not given. Checked in
#: order, so the specific H100 variants come before the bare name: the PCIe card (756) and the NVL
#: card (835) are slower than the SXM module (989), and so is the H200 NVL (835 against the SXM
#: H200's 989); an unrecognised H100 gets no MFU, not a guess.
PEAK_TFLOPS: dict[str, float] = {
    "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0,
    "H200 NVL": 835.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0,
}


def peak_tflops_for(name: str) -> float | None:
    """Peak for a CUDA device name such as "NVIDIA H100 PCIe" (None when unknown)."""
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


@dataclass
class BenchResult:
    modality: str
    model: str
    masker: str
    batch_size: int
    num_tokens: int
    visible_tokens: int
    device: str
    precision: str
    ms_per_step: float
    samples_per_s: float
    tokens_per_s: float
    peak_memory_mb: float
    tflops_per_step: float
    achieved_tflops: float
    mfu: float | None
    compiled: bool

    def to_dict(self) -> dict:
        return asdict(self)


def device_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return peak_tflops_for(torch.cuda.get_device_name(device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_step_flops(module: TrainingModule, x: torch.Tensor, progress: TrainingProgress,
                     device: torch.device, amp_dtype: torch.dtype | None) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    gen = torch.Generator(device=device).manual_seed(0)
    counter = FlopCounterMode(display=False)
    compiled, module._reconstruct = module._reconstruct, module.reconstruct  # count on eager ops
    try:
        with counter:
            with autocast(device, amp_dtype):
                out = module(x, gen, progress)
            out.loss.float().backward()
    finally:
        module._reconstruct = compiled
    module.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _bench_setup(config: TrainConfig, sample: torch.Tensor | None
                 ) -> tuple[torch.device, torch.dtype | None, RunParts, torch.Tensor]:
    """Device, precision, the run's parts and one batch built from a real sample (or ``sample``):
    copies with a little noise, so samples differ but keep the data's statistics."""
    device = resolve_device(config.device)
    amp_dtype = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)
    parts = build_run(config, with_data=sample is None, train=True)
    if sample is None:
        assert parts.dataset is not None
        sample = parts.dataset[0][0]
    x = sample.unsqueeze(0).repeat(config.batch_size, *([1] * sample.dim())).to(device)
    return device, amp_dtype, parts, x + 0.01 * torch.randn_like(x)


def bench_step(config: TrainConfig, steps: int = 10, warmup: int = 3, sample: torch.Tensor | None = None,
               peak_tflops: float | None = None) -> BenchResult:
    """Time ``steps`` optimiser steps of ``config``'s model/masker on one fixed batch."""
    device, amp_dtype, parts, x = _bench_setup(config, sample)
    tf32_for_fp32_runs(device, amp_dtype)  # as training does
    module = TrainingModule(parts.model, parts.masker, parts.loss, parts.mask_ratio).to(device)
    module.train()
    if config.compile:  # as in training: encoder, decoder and loss compiled, the masker eager
        module.compile_reconstruction()
    step_fn = module
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=True if device.type == "cuda" else None)
    # fp16 needs loss scaling, as in training (an unscaled fp16 step underflows and times the wrong thing)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    # late in training (90 %), so schedule-driven maskers (self-guided's start, hint decay) are in their
    # informed phase, which is what a benchmark of their cost must time
    progress = TrainingProgress(epoch=9, step=9_000, epochs=10, steps_per_epoch=1_000)
    gen = torch.Generator(device=device).manual_seed(config.seed)

    def one_step() -> None:
        with autocast(device, amp_dtype):
            out = step_fn(x, gen, progress)
        if scaler is not None:
            scaler.scale(out.loss.float()).backward()
            scaler.step(opt)
            scaler.update()
        else:
            out.loss.float().backward()
            opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one_step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    _sync(device)
    elapsed = (time.perf_counter() - t0) / steps
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_before) / 1024
    flops = count_step_flops(module, x, progress, device, amp_dtype)
    achieved = flops / elapsed / 1e12
    peak = peak_tflops or device_peak_tflops(device)
    n = parts.model.tokenizer.layout.num_tokens

    return BenchResult(
        modality=config.modality, model=config.model or parts.modality.default_model, masker=config.masker,
        batch_size=config.batch_size, num_tokens=n, visible_tokens=num_visible(n, parts.mask_ratio),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        precision=str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        ms_per_step=elapsed * 1e3, samples_per_s=config.batch_size / elapsed,
        tokens_per_s=config.batch_size * n / elapsed, peak_memory_mb=peak_mb, tflops_per_step=flops / 1e12,
        achieved_tflops=achieved, mfu=(achieved / peak) if peak else None, compiled=config.compile)


def bench_reference(config: TrainConfig, steps: int = 10, warmup: int = 3,
                    sample: torch.Tensor | None = None) -> BenchResult:
    """Time the plain eager MAE (``maskkit.lab.bench_reference``) with the run's tokenizer, model size,
    mask ratio and batch, on the same kind of input as :func:`bench_step`."""
    device, amp_dtype, parts, x = _bench_setup(config, sample)
    m = parts.model_config
    ratio = parts.mask_ratio
    model = PlainMAE(parts.model.tokenizer, m.embed_dim, m.depth, m.num_heads, m.decoder_dim, m.decoder_depth,
                     m.decoder_heads, ratio).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True if device.type == "cuda" else None)

    def one_step() -> None:
        with autocast(device, amp_dtype):
            loss = model(x)
        loss.float().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one_step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    _sync(device)
    elapsed = (time.perf_counter() - t0) / steps
    n = parts.model.tokenizer.layout.num_tokens
    return BenchResult(
        modality=config.modality, model=config.model or parts.modality.default_model,
        masker="reference (plain eager MAE)",
        batch_size=config.batch_size, num_tokens=n, visible_tokens=num_visible(n, ratio),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        precision=str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32", ms_per_step=elapsed * 1e3,
        samples_per_s=config.batch_size / elapsed, tokens_per_s=config.batch_size * n / elapsed,
        peak_memory_mb=float("nan"), tflops_per_step=float("nan"), achieved_tflops=float("nan"), mfu=None,
        compiled=False)
