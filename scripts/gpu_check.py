"""The GPU checks that no CPU test can do, as one ~7-minute shot for a machine lent once.

    python scripts/gpu_check.py                              # on a CUDA machine
    python scripts/gpu_check.py --device cpu --quick         # the same code paths, tiny, on a CPU (CI)

Rerunnable: every run writes into its own ``OUT/run-YYYYmmdd-HHMMSS[-N]`` folder. Every check runs
in its own ``try`` with its own time limit (SIGALRM), so one failing or slow check does not cost
the others, and appends one JSON line to ``checks.jsonl`` as soon as it ends (``status`` ok,
error or timeout, with its seconds). The checks:

- ``environment``: versions, device, SDPA kernels, TF32 flags;
- ``bench``: ViT-B/16 224² bf16, interleaved rounds of random / self-guided (middle, early layer,
  embeddings) / the plain eager MAE reference: ms/step, MFU, peak memory;
- ``eigh_vs_power``: label agreement and times of power iteration capped at 50/100/200 products and
  converged, against ``eigh``, on ViT-B features and on synthetic weak clusters by eigengap, at 196
  and 1568 tokens;
- ``sync_audit``: host syncs of self-guided training steps under ``torch.cuda.set_sync_debug_mode``,
  counted per file:line;
- ``profile``: where a self-guided step's time goes (profiler, top operators);
- ``modality_steps``: ms/step of every modality's default model;
- ``fsdp_world_of_one``: FSDP2 with bf16 on a world of one: loss against the unwrapped module,
  parameter and activation dtypes, save and load;
- ``fsdp_compile``: FSDP2 with bf16 and each compile policy (the whole reconstruction, then each
  block alone, the trainer's choice under FSDP): graphs built per step, graph breaks, loss;
- ``compile``: compiled against eager ms/step;
- ``resume``: an fp32 run stopped and resumed equals the uninterrupted run bit for bit.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import shutil
import signal
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from maskkit.lab.bench import bench_reference, bench_step
from maskkit.maskers import graph
from maskkit.maskers.base import TrainingProgress
from maskkit.threads import configure_threads
from maskkit.train.build import build_run
from maskkit.train.checkpoint import atomic_save, load_checkpoint
from maskkit.train.config import TrainConfig
from maskkit.train.trainer import run_training


class CheckTimeout(Exception):
    """A check ran past its own time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise CheckTimeout(f"past its limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def new_run_dir(root: Path) -> Path:
    """A fresh timestamped folder under ``root`` (never one a previous run wrote)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = root / (f"run-{stamp}" if n == 0 else f"run-{stamp}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder under {root}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], Any], repeat: int, device: torch.device) -> float:
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / repeat * 1e3


class Checks:
    def __init__(self, device: torch.device, quick: bool, out: Path) -> None:
        self.device, self.quick, self.out = device, quick, out
        self.precision = "bf16" if device.type == "cuda" else "fp32"
        self.model = "nano" if quick else "base"
        self.image = {"image_size": 16 if quick else 224, "patch_size": 4 if quick else 16}
        self.batch = 4 if quick else 128

    def config(self, **kw: Any) -> TrainConfig:
        base = dict(modality="image", model=self.model, modality_options=self.image, batch_size=self.batch,
                    device=self.device.type, precision=self.precision, progress=False)
        base.update(kw)
        return TrainConfig(**base)

    # ------------------------------------------------------------------ checks
    def environment(self) -> dict[str, Any]:
        row: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                               "cuda": torch.version.cuda, "float32_matmul_precision":
                               torch.get_float32_matmul_precision()}
        if self.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.device)
            row.update(name=props.name, memory_gib=props.total_memory / 2**30,
                       capability=f"{props.major}.{props.minor}",
                       cudnn=torch.backends.cudnn.version(), flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                       mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled(),
                       cudnn_sdp=torch.backends.cuda.cudnn_sdp_enabled(),
                       matmul_fp32_precision=torch.backends.cuda.matmul.fp32_precision,
                       cudnn_fp32_precision=torch.backends.cudnn.conv.fp32_precision)
        return row

    def bench(self) -> dict[str, Any]:
        """Interleaved rounds (A B C A B C ...), so drift of clocks and temperature spreads evenly."""
        variants: dict[str, Callable[[], Any]] = {
            "random": lambda: bench_step(self.config(masker="random"), steps=self.steps, warmup=1),
            "self-guided middle": lambda: bench_step(self.config(masker="self-guided", masker_options={
                "feature_layer": "middle"}), steps=self.steps, warmup=1),
            "self-guided early": lambda: bench_step(self.config(masker="self-guided", masker_options={
                "feature_layer": 1}), steps=self.steps, warmup=1),
            "self-guided embeddings": lambda: bench_step(self.config(masker="self-guided", masker_options={
                "feature_source": "embeddings"}), steps=self.steps, warmup=1),
            "plain reference": lambda: bench_reference(self.config(masker="random"), steps=self.steps, warmup=1),
        }
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(1 if self.quick else 2):
            for name, fn in variants.items():
                rows[name].append(asdict(fn()))
        summary = {}
        for name, results in rows.items():
            ms = [r["ms_per_step"] for r in results]
            summary[name] = {"ms_per_step": ms, "mfu": results[-1]["mfu"],
                             "peak_memory_mb": results[-1]["peak_memory_mb"],
                             "tokens": results[-1]["num_tokens"], "batch": results[-1]["batch_size"]}
        return {"variants": summary}

    @property
    def graph_sizes(self) -> tuple[int, int]:
        return (16, 64) if self.quick else (196, 1568)

    @property
    def steps(self) -> int:
        return 2 if self.quick else 10

    def eigh_vs_power(self) -> dict[str, Any]:
        rows = []
        for tokens in self.graph_sizes:
            batch = 4 if self.quick else (64 if tokens <= 196 else 8)
            features = self._feature_graphs(tokens, batch)
            tokens = features.shape[-1]
            graphs = {"vit_features": features}
            for gap in ((0.05,) if self.quick else (0.005, 0.01, 0.02, 0.05)):
                graphs[f"weak_clusters_gap_{gap}"] = self._weak_clusters(batch, tokens, gap)
            for name, w in graphs.items():
                exact = graph.bipartition(w, "ncut", precision="fp32")
                eigh_ms = timed_ms(lambda w=w: graph.bipartition(w, "ncut", precision="fp32"), 1, self.device)
                row: dict[str, Any] = {"tokens": tokens, "batch": batch, "graphs": name, "eigh_ms": eigh_ms,
                                       "eigengap_median": float(exact.eigengap.median())}
                for cap in (50, 100, 200, 4096):
                    start = torch.randn(batch, tokens, 2, generator=torch.Generator().manual_seed(0)).to(self.device)
                    spec = graph.fiedler_power(w, iters=cap, start=start)
                    labels = graph.split(spec.y, "mean")
                    same = (labels == exact.labels).float().mean(-1)
                    agree = torch.maximum(same, 1 - same)
                    row[f"power_{cap}"] = {
                        "products": spec.iterations, "agreement_mean": float(agree.mean()),
                        "agreement_min": float(agree.min()),
                        "ms": timed_ms(lambda w=w, cap=cap, start=start: graph.fiedler_power(w, iters=cap, start=start),
                                       1, self.device)}
                rows.append(row)
        return {"rows": rows}

    def _feature_graphs(self, tokens: int, batch: int) -> torch.Tensor:
        """Affinities of an untrained ViT's middle-layer features on builtin data: images for the
        smaller size (14 x 14 patches: 196), video clips for the larger (8 x 14 x 14 tubelets: 1568)."""
        if tokens == min(self.graph_sizes):
            cfg = self.config(modality_options=self.image)
        else:
            video = {"image_size": self.image["image_size"], "patch_size": self.image["patch_size"],
                     "num_frames": 16 if not self.quick else 8}
            cfg = self.config(modality="video", modality_options=video)
        parts = build_run(cfg, with_data=True)
        model = parts.model.to(self.device).eval()
        x = torch.stack([parts.dataset[i][0] for i in range(batch)]).to(self.device)
        with torch.no_grad():
            feats = model.token_features(model.tokenize(x), layer=max(0, len(model.blocks) // 2 - 1))
        return graph.affinity_from_similarity(graph.cosine_similarity(graph.prepare_features(feats.float())),
                                              "tokencut", tau_quantile=0.6, min_neighbours=3)

    def _weak_clusters(self, batch: int, n: int, gap: float) -> torch.Tensor:
        """Random dense graphs with a planted split, its strength bisected to eigengap ``gap``."""
        g = torch.Generator().manual_seed(0)
        base = torch.rand(batch, n, n, generator=g)
        base = 0.5 * (base + base.transpose(1, 2))
        side = torch.rand(batch, n, generator=g) < 0.5
        same = (side.unsqueeze(-1) == side.unsqueeze(-2)).float()
        base, same = base.to(self.device), same.to(self.device)
        off = 1 - torch.eye(n, device=self.device)
        lo, hi = torch.zeros(batch, device=self.device), torch.ones(batch, device=self.device)
        for _ in range(16):
            mid = 0.5 * (lo + hi)
            vals = torch.linalg.eigvalsh(graph.normalized_laplacian((base + mid.view(-1, 1, 1) * same) * off))
            wide = (vals[:, 2] - vals[:, 1]) > gap
            hi, lo = torch.where(wide, mid, hi), torch.where(wide, lo, mid)
        return (base + (0.5 * (lo + hi)).view(-1, 1, 1) * same) * off

    def sync_audit(self) -> dict[str, Any]:
        """Every host sync of a short self-guided run, counted per file:line of maskkit's code."""
        counts: Counter[str] = Counter()
        cfg = self.config(model="nano", modality_options={"image_size": 32, "patch_size": 4}, batch_size=8,
                          masker="self-guided", masker_options={"start": "epoch", "start_epoch": 0}, epochs=1,
                          max_steps_per_epoch=4 if self.quick else 50, log_every=10, out=str(self.out / "sync-run"))
        if self.device.type != "cuda":
            steps = run_training(cfg).steps
            return {"steps": steps, "syncs": {}, "note": "CPU tensors have no device queue: nothing to audit"}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                steps = run_training(cfg).steps
            finally:
                torch.cuda.set_sync_debug_mode(0)
        for w in caught:  # a warning carries the Python frame that made the sync: its file:line
            if "synchroniz" in str(w.message):
                counts[f"{Path(w.filename).name}:{w.lineno}"] += 1
        return {"steps": steps, "syncs": dict(counts.most_common()), "total": sum(counts.values())}

    def profile(self) -> dict[str, Any]:
        from torch.profiler import ProfilerActivity, profile

        from maskkit.train.runtime import autocast, resolve_precision
        from maskkit.train.step import TrainingModule

        parts = build_run(self.config(masker="self-guided"), with_data=True)
        module = TrainingModule(parts.model, parts.masker, parts.loss, parts.mask_ratio).to(self.device)
        sample = parts.dataset[0][0]
        x = sample.unsqueeze(0).repeat(self.batch, *([1] * sample.dim())).to(self.device)
        amp = resolve_precision(self.precision, self.device)
        gen = torch.Generator(device=self.device).manual_seed(0)
        progress = TrainingProgress(epoch=9, step=9000, epochs=10, steps_per_epoch=1000)

        def step() -> None:
            with autocast(self.device, amp):
                out = module(x, gen, progress)
            out.loss.float().backward()

        step()
        sync(self.device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            step()
            sync(self.device)
        key = "device_time_total" if self.device.type == "cuda" else "cpu_time_total"
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0.0), reverse=True)
        return {"top": [{"op": e.key, "ms": getattr(e, key, 0.0) / 1e3, "calls": e.count} for e in events[:15]]}

    def modality_steps(self) -> dict[str, Any]:
        rows = {}
        for modality in ("image", "video", "audio", "pointcloud"):
            cfg = TrainConfig(modality=modality, batch_size=2 if self.quick else 32, device=self.device.type,
                              modality_options=QUICK_SHAPES[modality] if self.quick else {},
                              precision=self.precision, progress=False,
                              model="nano" if self.quick else None)
            result = bench_step(cfg, steps=self.steps, warmup=1)
            rows[modality] = {"ms_per_step": result.ms_per_step, "model": result.model, "tokens": result.num_tokens,
                              "mfu": result.mfu}
        return {"modalities": rows}

    @contextlib.contextmanager
    def world_of_one(self, name: str) -> Iterator[None]:
        """A process group of this process alone: FSDP2 installs the same per-block hooks as on N ranks."""
        import torch.distributed as dist

        store = dist.FileStore(str(self.out / f"{name}-store"), 1)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=store, rank=0, world_size=1,
                                device_id=self.device if self.device.type == "cuda" else None)
        try:
            yield
        finally:
            dist.destroy_process_group()

    def fsdp_module(self) -> tuple[Any, torch.Tensor]:
        """The FSDP checks' unwrapped training module (nano with --quick, else ViT-S) and a batch of 4."""
        from maskkit.train.step import TrainingModule

        parts = build_run(self.config(model="nano" if self.quick else "small"), with_data=True)
        plain = TrainingModule(parts.model, parts.masker, parts.loss, parts.mask_ratio).to(self.device)
        sample = parts.dataset[0][0]
        return plain, sample.unsqueeze(0).repeat(4, *([1] * sample.dim())).to(self.device)

    def fsdp_world_of_one(self) -> dict[str, Any]:
        from maskkit.train.distributed import fsdp_wrap, full_state_dict

        with self.world_of_one("fsdp"):
            plain, x = self.fsdp_module()
            progress = TrainingProgress()
            sharded = fsdp_wrap(copy.deepcopy(plain), torch.bfloat16)
            dtypes: dict[str, str] = {}

            def record_dtype(name: str) -> Callable[..., None]:
                def hook(module: Any, args: Any, output: Any) -> None:  # noqa: ARG001
                    dtypes.setdefault(f"{name} input", str(args[0].dtype) if args else "-")
                return hook

            handle = sharded.model.blocks[0].register_forward_hook(record_dtype("block 0"))  # type: ignore[union-attr]

            def loss_of(m: torch.nn.Module) -> float:
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    out = m(x, torch.Generator(device=self.device).manual_seed(0), progress)
                out.loss.backward()
                return float(out.loss.detach())

            ref, got = loss_of(plain), loss_of(sharded)
            handle.remove()
            state = full_state_dict(sharded, sharded.model, "model")  # type: ignore[arg-type]
            path = self.out / "fsdp-model.pt"
            torch.save(state, path)
            loaded = torch.load(path, weights_only=True)
            same = all(torch.equal(loaded[k], v) for k, v in state.items())
            params = {str(p.dtype) for p in sharded.parameters()}
            return {"loss_unwrapped": ref, "loss_fsdp": got, "abs_diff": abs(ref - got), "dtypes": dtypes,
                    "master_param_dtypes": sorted(params), "save_load_equal": same}

    def fsdp_compile(self) -> dict[str, Any]:
        """Both compile policies under FSDP2 with bf16: the graphs dynamo builds in each of two steps,
        its graph breaks, and the first-step loss against eager FSDP. Inductor on CUDA; on a CPU the
        eager backend (dynamo's graphs alone, in seconds where inductor takes minutes)."""
        import torch._dynamo
        from torch._dynamo.utils import counters

        from maskkit.train.distributed import compile_blocks, fsdp_wrap

        inner = torch._dynamo.lookup_backend("inductor" if self.device.type == "cuda" else "eager")
        with self.world_of_one("fsdp-compile"):
            plain, x = self.fsdp_module()
            row: dict[str, Any] = {"backend": "inductor" if self.device.type == "cuda" else "eager"}
            for policy in ("eager", "reconstruction", "blocks"):
                graphs: list[int] = []

                def counting(gm: torch.fx.GraphModule, example_inputs: list[Any],
                             graphs: list[int] = graphs) -> Callable[..., Any]:
                    graphs.append(len(gm.graph.nodes))
                    return inner(gm, example_inputs)

                torch._dynamo.reset()
                counters.clear()
                module = copy.deepcopy(plain)
                if policy == "reconstruction":  # as the trainer compiles for DDP and one process
                    module.compile_reconstruction(backend=counting)
                wrapped = fsdp_wrap(module, torch.bfloat16)
                if policy == "blocks":  # as the trainer compiles under FSDP
                    compile_blocks(wrapped, backend=counting)
                losses, graphs_after = [], []
                t0 = time.perf_counter()
                for step in range(2):
                    with torch.autocast(self.device.type, dtype=torch.bfloat16):
                        out = wrapped(x, torch.Generator(device=self.device).manual_seed(step), TrainingProgress())
                    out.loss.backward()
                    losses.append(float(out.loss.detach()))
                    graphs_after.append(len(graphs))
                row[policy] = {"loss": losses[0], "graphs_after_step": graphs_after, "graph_ops": graphs,
                               "graph_breaks": sum(counters["graph_break"].values()),
                               "seconds_two_steps": time.perf_counter() - t0}
            for policy in ("reconstruction", "blocks"):
                row[policy]["abs_diff_to_eager"] = abs(row[policy]["loss"] - row["eager"]["loss"])
            return row

    def compile(self) -> dict[str, Any]:
        if self.device.type != "cuda" and self.quick:
            return {"skipped": "compile on CPU needs a C++ toolchain and minutes; measured on CUDA only"}
        eager = bench_step(self.config(masker="self-guided"), steps=self.steps, warmup=1)
        compiled = bench_step(self.config(masker="self-guided", compile=True), steps=self.steps, warmup=3)
        return {"eager_ms": eager.ms_per_step, "compiled_ms": compiled.ms_per_step,
                "speedup": eager.ms_per_step / compiled.ms_per_step}

    def resume(self) -> dict[str, Any]:
        """An fp32 run resumed from its epoch-1 checkpoint equals the uninterrupted run bit for bit."""
        common = dict(model="nano", modality_options={"image_size": 16, "patch_size": 4}, batch_size=8,
                      precision="fp32", masker="self-guided", masker_options={"start": "epoch", "start_epoch": 0},
                      max_steps_per_epoch=2, save_every=1, seed=2, epochs=2)
        whole, parts = self.out / "resume-whole", self.out / "resume-parts"
        run_training(self.config(out=str(whole), **common))
        (parts / "checkpoints").mkdir(parents=True)
        shutil.copy(whole / "config.json", parts / "config.json")
        atomic_save(load_checkpoint(whole / "checkpoints/epoch_0001.pt"), parts / "checkpoints/last.pt")
        run_training(self.config(out=str(parts), resume=True, **common))
        a = load_checkpoint(whole / "checkpoints/last.pt")["model"]
        b = load_checkpoint(parts / "checkpoints/last.pt")["model"]
        differing = [k for k in a if not torch.equal(a[k], b[k])]
        return {"bit_identical": not differing, "differing": differing[:5]}


#: tiny inputs per modality for --quick (CPU smoke runs)
QUICK_SHAPES: dict[str, dict[str, Any]] = {
    "image": {"image_size": 16, "patch_size": 4}, "video": {"image_size": 16, "patch_size": 8, "num_frames": 4},
    "audio": {"num_frames": 64}, "pointcloud": {"num_points": 128, "num_groups": 8, "group_size": 16}}

LIMITS = {"environment": 30, "bench": 150, "eigh_vs_power": 90, "sync_audit": 45, "profile": 30,
          "modality_steps": 60, "fsdp_world_of_one": 60, "fsdp_compile": 150,
          "compile": 90, "resume": 45}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check", help="parent folder; each run gets its own inside")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke run of this script)")
    parser.add_argument("--only", default="", help="comma-separated checks (default: all, in order)")
    parser.add_argument("--scale-limits", type=float, default=1.0, help="multiply every check's time limit")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    configure_threads(None)  # $OMP_NUM_THREADS, else this process's share of the CPUs
    out = new_run_dir(Path(args.out))
    checks = Checks(device, args.quick, out)
    names = [n for n in args.only.split(",") if n] or list(LIMITS)
    lines = out / "checks.jsonl"
    failed = 0
    for name in names:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"check": name, "device": args.device, "quick": args.quick}
        try:
            with time_limit(LIMITS[name] * args.scale_limits):
                row.update(getattr(checks, name)())
            row["status"] = "ok"
        except CheckTimeout as exc:
            row.update(status="timeout", error=str(exc))
            failed += 1
        except Exception as exc:  # noqa: BLE001 - one failing check must not cost the others
            row.update(status="error", error=f"{type(exc).__name__}: {exc}"[:500],
                       traceback=traceback.format_exc()[-2000:])
            failed += 1
        row["seconds"] = time.perf_counter() - t0
        with lines.open("a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
        print(json.dumps({k: row[k] for k in ("check", "status", "seconds")}), flush=True)
    print(f"{len(names) - failed}/{len(names)} checks ok -> {lines}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
