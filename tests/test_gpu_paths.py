"""GPU-path defects caught on a CPU: host syncs and wrong-device tensors in a training step, bf16
autocast overriding fp32 maths, fp16 loss-scaler skips reported as failures, MFU peaks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from maskkit.lab import analysis
from maskkit.losses import ReconstructionMSE
from maskkit.maskers import graph
from maskkit.maskers.base import TrainingProgress
from maskkit.maskers.signals import exploitation_rates
from maskkit.maskers.stats import PositionFrequency
from maskkit.model.mae import MaskedAutoencoder, model_preset
from maskkit.positions import FixedGridPositionEmbedding, MLPPositionEmbedding
from maskkit.registry import build_masker
from maskkit.sync_guard import HostSyncError, HostSyncGuard, deliberate_sync
from maskkit.tokenizer import Tokenizer
from maskkit.tokens import TokenBatch, TokenLayout
from maskkit.train.step import TrainingModule

PATCH = 4


class LayoutTokenizer(Tokenizer):
    """(B, N, PATCH) inputs -> tokens on any layout; unordered layouts take positions from x[..., :3]."""

    def __init__(self, layout: TokenLayout, embed_dim: int) -> None:
        super().__init__()
        self.layout, self.embed_dim, self.target_dim = layout, embed_dim, PATCH
        self.proj = nn.Linear(PATCH, embed_dim)
        if layout.has_grid:
            self.register_buffer("grid_positions", layout.grid_coordinates().float(), persistent=False)

    def tokenize(self, x: Tensor) -> TokenBatch:
        positions = self.grid_positions if self.layout.has_grid else x[..., :3]
        return TokenBatch(embeddings=self.proj(x), targets=x, positions=positions, layout=self.layout)

    def build_position_embedding(self, dim: int) -> nn.Module:
        if self.layout.has_grid:
            return FixedGridPositionEmbedding(self.layout.grid_coordinates(), dim)
        return MLPPositionEmbedding(3, dim, hidden=16)


LAYOUTS = {"image": TokenLayout.from_grid((4, 4), ("h", "w")),
           "audio": TokenLayout.from_grid((4, 4), ("time", "freq")),
           "video": TokenLayout.from_grid((2, 4, 4), ("t", "h", "w")),
           "series": TokenLayout.from_grid((16,), ("time",)),
           "points": TokenLayout.unordered(16)}
#: every masker with options that reach its informed/random paths in the step
STEP_CASES = [
    ("random", "image", {}), ("block", "image", {}), ("block", "video", {"mode": "simmim"}),
    ("noise-red", "image", {}), ("noise-blue", "audio", {}), ("noise-green", "video", {}),
    ("noise-purple", "series", {}), ("attention", "image", {"hint_ratio": 0.25, "masking_prob": 0.5}),
    ("hard-patches", "image", {"schedule": "constant"}), ("learned", "points", {}),
    ("self-guided", "image", {}), ("self-guided", "points", {"partition": "power"}),
    ("self-guided", "image", {"start": "exploitation", "exploit_every": 1}),
    ("curriculum", "image", {"first": "block", "second": "self-guided"}),
    ("mixture", "image", {"maskers": ["noise-green", "attention"]}),
    ("time-freq", "audio", {}), ("tube", "video", {}), ("frame", "video", {}),
    ("point-block", "points", {}), ("ts-span", "series", {}),
]


def step_module(name: str, layout_name: str, options: dict) -> tuple[TrainingModule, Tensor]:
    torch.manual_seed(0)
    layout = LAYOUTS[layout_name]
    config = model_preset("nano", depth=2, decoder_depth=1)
    model = MaskedAutoencoder(LayoutTokenizer(layout, config.embed_dim), config)
    masker = build_masker(name, options)
    masker.bind_model(model.shape)
    module = TrainingModule(model, masker, ReconstructionMSE(), 0.75)
    return module, torch.randn(4, layout.num_tokens, PATCH)


@pytest.mark.parametrize(("name", "layout_name", "options"), STEP_CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(STEP_CASES)])
def test_training_step_has_no_host_sync_and_no_stray_device(name, layout_name, options):
    """Forward, mask, loss, backward and the trainer's per-step bookkeeping, inside a guard that raises
    on host syncs, tensors built from Python data and tensors created without a device."""
    module, x = step_module(name, layout_name, options)
    late = TrainingProgress(epoch=8, step=40, epochs=10, steps_per_epoch=5)  # informed phases are on
    frequency = PositionFrequency(x.shape[1])
    with HostSyncGuard():
        gen = torch.Generator().manual_seed(1)
        host = torch.Generator().manual_seed(1)
        out = module(x, gen, late, host)
        out.loss.float().backward()
        frequency.update(out.plan)
        logs = [v.detach().float().reshape(()) for v in out.logs.values() if isinstance(v, Tensor)]
        torch.stack([out.recon_loss.detach(), *logs])
    assert all(p.grad is not None for p in module.model.parameters() if p.requires_grad)


def test_guard_catches_what_it_promises():
    x = torch.randn(5)
    cases = [lambda: float(x.sum()), lambda: x[x > 0], lambda: x.nonzero(),
             lambda: x + torch.tensor(1.0, device=x.device), lambda: x + torch.arange(5),
             lambda: torch.repeat_interleave(x, torch.tensor([1, 2, 1, 1, 1]))]
    for case in cases:
        with pytest.raises((HostSyncError, RuntimeError)), HostSyncGuard():
            case()
    with HostSyncGuard():  # allowed: fills, explicit devices, marked syncs
        y = x + torch.full((), 1.0, device=x.device) + torch.zeros(5, device=x.device)
        with deliberate_sync("test"):
            float(y.sum())
        x.repeat_interleave(2)


# --------------------------------------------------------------------------- precision
def bf16(fn, *args, **kwargs):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn(*args, **kwargs)


def test_attention_maps_are_fp32_under_bf16_autocast():
    module, x = step_module("random", "image", {})
    model = module.model.eval()
    with torch.no_grad():
        tokens = model.tokenize(x)
        ref = model.encoder_attention(tokens, [-1])[1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.encoder_attention(model.tokenize(x), [-1])[1]
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=5e-3, rtol=0)  # bf16 q/k, fp32 scores and softmax
    torch.testing.assert_close(low.sum(-1), torch.ones_like(low.sum(-1)), atol=1e-5, rtol=0)


def test_positions_are_added_in_fp32():
    module, x = step_module("random", "image", {})
    model = module.model
    tokens = model.tokenize(x)
    half = TokenBatch(embeddings=tokens.embeddings.bfloat16(), targets=tokens.targets,
                      positions=tokens.positions, layout=tokens.layout)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model._with_positions(half)
    assert mixed.dtype == torch.float32
    exact = half.embeddings.float() + model.encoder_pos(tokens.positions).float()
    assert torch.equal(mixed, exact)


def clustered_features(b: int = 3, n: int = 24, d: int = 16) -> Tensor:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2, d, generator=g)
    side = (torch.arange(n) < n // 3).long()
    return centres[side].expand(b, -1, -1) + 0.6 * torch.randn(b, n, d, generator=g)


@pytest.mark.parametrize("metric", [analysis.similarity_gap, analysis.similarity_variance,
                                    analysis.feature_variance, analysis.similarity_score])
def test_clustering_metrics_equal_under_bf16_autocast(metric):
    f = clustered_features()
    torch.testing.assert_close(bf16(metric, f), metric(f), rtol=1e-5, atol=1e-6)


def test_attention_metrics_and_exploitation_equal_under_bf16_autocast():
    f = clustered_features()
    attn = (f @ f.transpose(1, 2)).unsqueeze(1).softmax(-1)
    mask = torch.rand(3, 24, generator=torch.Generator().manual_seed(1)) < 0.75
    torch.testing.assert_close(bf16(analysis.attention_gap, attn), analysis.attention_gap(attn))
    for got, want in zip(bf16(exploitation_rates, [attn], mask),
                         exploitation_rates([attn], mask), strict=True):
        torch.testing.assert_close(got, want)


def test_graph_functions_accept_bf16_and_compute_in_fp32():
    f = clustered_features()
    half = f.bfloat16()
    want = graph.cosine_affinity(half.float(), tau_quantile=0.5)
    got = graph.cosine_affinity(half, tau_quantile=0.5)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    for method in ("ncut", "power"):
        bip = graph.bipartition(got.bfloat16(), method, start=torch.randn(3, 24, 2))
        assert bip.y.dtype == torch.float32 and bip.labels.shape == (3, 24)
    assert graph.pca_bipartition(half).y.dtype == torch.float32
    assert graph.ncut_value(got.bfloat16(), bip.labels).dtype == torch.float32
    assert torch.equal(graph.offdiagonal(got), got[:, ~torch.eye(24, dtype=torch.bool)].reshape(3, -1))


def test_partition_auto_uses_eigh_on_cpu_and_power_on_large_cuda_graphs():
    assert graph.resolve_partition("auto", 196, torch.device("cpu")) == "ncut"
    assert graph.resolve_partition("auto", 32, torch.device("cuda")) == "ncut"
    assert graph.resolve_partition("auto", 196, torch.device("cuda")) == "power"
    assert graph.resolve_partition("pca", 196, torch.device("cuda")) == "pca"


# --------------------------------------------------------------------------- fp16 loss scaling
@pytest.fixture
def scaled_trainer(toy_config, tmp_path):
    from maskkit.train.trainer import Trainer

    trainer = Trainer(toy_config(on_nonfinite="stop", out=str(tmp_path / "fp16")))
    trainer.setup()
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    trainer.scaler.scale(torch.ones(()))  # as a step's backward would: the scale now exists
    return trainer


def fill_grads(trainer, value: float) -> None:
    for group in trainer.optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.full_like(p, value)


def test_scaler_overflow_is_not_reported_as_nonfinite(scaled_trainer):
    trainer = scaled_trainer
    before = {n: p.detach().clone() for n, p in trainer.module.named_parameters()}
    fill_grads(trainer, float("inf"))  # what an fp16 overflow leaves after scaling
    trainer._group_loss = torch.tensor(0.5)  # the loss itself was finite
    trainer._optimizer_step()  # on_nonfinite=stop must not fire
    assert trainer.scaler.get_scale() == 2.0**15  # the scaler skipped the step and backed off
    assert all(torch.equal(p, before[n]) for n, p in trainer.module.named_parameters())
    assert not (trainer.out / "metrics.jsonl").is_file() or "nonfinite" not in (
        trainer.out / "metrics.jsonl").read_text()


def test_nonfinite_loss_under_scaler_still_stops(scaled_trainer):
    from maskkit.train.trainer import TrainingStopped

    fill_grads(scaled_trainer, float("nan"))
    scaled_trainer._group_loss = torch.tensor(float("nan"))
    with pytest.raises(TrainingStopped, match="non-finite"):
        scaled_trainer._optimizer_step()


# --------------------------------------------------------------------------- small decisions
def test_mfu_peaks_tell_h100_variants_apart():
    from maskkit.lab.bench import peak_tflops_for

    assert peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops_for("NVIDIA H100 NVL") == 835.0
    assert peak_tflops_for("NVIDIA H100") is None  # unknown variant: no MFU rather than a wrong one
    assert peak_tflops_for("NVIDIA H200") == 989.0 and peak_tflops_for("NVIDIA H200 NVL") == 835.0


def test_unused_parameter_search_only_when_a_masker_parameter_can_idle():
    from maskkit.train.distributed import needs_unused_parameter_search

    def module(name: str, options: dict) -> SimpleNamespace:
        return SimpleNamespace(masker=build_masker(name, options))

    assert not needs_unused_parameter_search(module("random", {}))
    assert not needs_unused_parameter_search(module("learned", {}))
    assert needs_unused_parameter_search(module("learned", {"loss_weight": 0.0}))
    assert needs_unused_parameter_search(module("mixture", {"maskers": ["random", "hard-patches"],
                                                            "options": {"hard-patches": {"loss_weight": 0}}}))


def test_num_workers_auto_and_resolved_precision():
    from maskkit.train.runtime import DistInfo, precision_name, resolve_num_workers

    assert resolve_num_workers(None, torch.device("cpu"), DistInfo()) == 0
    assert resolve_num_workers(3, torch.device("cpu"), DistInfo()) == 3
    assert 0 <= resolve_num_workers(None, torch.device("cuda", 0), DistInfo(0, 8, 0)) <= 8
    assert [precision_name(d) for d in (None, torch.bfloat16, torch.float16)] == ["fp32", "bf16", "fp16"]


# --------------------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("name", ["random", "self-guided"])
def test_compiled_reconstruction_never_recompiles(name):
    """The masker stays eager, so per-step Python values (self-guided's decaying hint ratio, its
    start flag) never reach compiled code: ten steps compile once (eager backend: tracing only)."""
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    options = {"start": "epoch", "start_epoch": 0} if name == "self-guided" else {}
    module, x = step_module(name, "image", options)
    module.compile_reconstruction(backend="eager")
    opt = torch.optim.SGD(module.parameters(), lr=1e-2)
    dynamo.reset()
    counters.clear()
    hints = set()
    with dynamo.config.patch(error_on_recompile=True):
        for step in range(10):
            progress = TrainingProgress(epoch=step // 5, step=step, epochs=2, steps_per_epoch=5)
            out = module(x, torch.Generator().manual_seed(step), progress)
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            hints.add(float(out.logs.get("sg/hint_ratio", 0.0)))
    assert counters["stats"]["unique_graphs"] >= 1
    if name == "self-guided":
        assert len(hints) == 10  # a new float every step, and still no recompile


def test_study_refuses_a_run_made_in_another_resolved_precision(tmp_path):
    """precision="auto" means fp32 on a CPU and bf16 on CUDA: the resolved value is what must match."""
    import json

    from maskkit.config_utils import ConfigError
    from maskkit.lab.study.runner import check_run_matches
    from maskkit.train.config import TrainConfig

    expected = TrainConfig(modality="toy", device="cpu", precision="auto")
    saved = {k: v for k, v in expected.to_dict().items() if k in ("modality", "masker", "precision")}
    (tmp_path / "config.json").write_text(json.dumps({**saved, "resolved_precision": "bf16"}))
    with pytest.raises(ConfigError, match="trained in bf16 but this study runs in fp32"):
        check_run_matches(tmp_path, expected)
    (tmp_path / "config.json").write_text(json.dumps({**saved, "resolved_precision": "fp32"}))
    check_run_matches(tmp_path, expected)
    (tmp_path / "config.json").write_text(json.dumps({**saved, "precision": "fp32"}))  # older runs
    check_run_matches(tmp_path, expected)


def test_resume_restores_only_the_gpus_that_exist(monkeypatch):
    """A checkpoint saved with 4 visible GPUs resumes where 1 is visible (it used to IndexError)."""
    from maskkit.train import checkpoint

    state = checkpoint.rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, index: restored.append((index, int(s[0]))))
    checkpoint.set_rng_state(state)
    assert restored == [(0, 0)]


def test_tf32_switch_keeps_the_matmul_precision_readable():
    """Training's TF32 switch and the graph maths use one API, so torch can still report the setting
    (mixing ``allow_tf32`` with ``set_float32_matmul_precision`` made the getter raise)."""
    from maskkit.maskers.graph import full_fp32
    from maskkit.train.runtime import tf32_for_fp32_runs

    before = torch.get_float32_matmul_precision()
    try:
        tf32_for_fp32_runs(torch.device("cuda"), torch.bfloat16)
        assert torch.get_float32_matmul_precision() == before  # bf16 runs leave it alone
        tf32_for_fp32_runs(torch.device("cuda"), None)
        assert torch.get_float32_matmul_precision() == "high"
        with full_fp32(torch.device("cuda")):
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)
