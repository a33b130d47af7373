"""scripts/gpu_check.py on a CPU: rerunnable, one JSONL row per check, and a check past its time
limit costs only itself."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "checks.jsonl").read_text().splitlines()]


def test_gpu_check_quick_on_cpu_runs_twice_and_isolates_a_slow_check(tmp_path, monkeypatch):
    gpu_check = load_script()
    threads = torch.get_num_threads()
    try:
        only = "environment,eigh_vs_power,fsdp_world_of_one,fsdp_compile,resume"
        # the second run in the same --out must not trip over the first (its checks write run folders)
        for checks in (only, "resume"):
            assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path), "--only", checks]) == 0
        runs = sorted(tmp_path.glob("run-*"))
        assert len(runs) == 2 and rows(runs[1])[0]["status"] == "ok"
        for run in runs[:1]:
            got = rows(run)
            assert [r["check"] for r in got] == only.split(",") and {r["status"] for r in got} == {"ok"}
            by = {r["check"]: r for r in got}
            assert by["fsdp_world_of_one"]["abs_diff"] <= 1e-5 and by["fsdp_world_of_one"]["save_load_equal"]
            # bf16: attention and MLP compiled per shape (encoder, decoder), norms eager in their FSDP groups
            blocks = by["fsdp_compile"]["blocks"]
            assert blocks["graphs_after_step"] == [4, 4] and blocks["graph_breaks"] == 0
            assert blocks["abs_diff_to_eager"] <= 1e-6 and by["fsdp_compile"]["reconstruction"]["graph_breaks"] > 0
            assert by["resume"]["bit_identical"]
            for row in by["eigh_vs_power"]["rows"]:
                assert row["power_4096"]["agreement_min"] >= 0.99 and row["power_4096"]["products"] < 4096
        # a limit too short for one check: it alone is recorded as a timeout, the next still runs
        monkeypatch.setitem(gpu_check.LIMITS, "eigh_vs_power", 0.001)
        code = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path),
                               "--only", "eigh_vs_power,environment"])
        assert code == 1
        last = rows(sorted(tmp_path.glob("run-*"))[-1])
        assert [(r["check"], r["status"]) for r in last] == [("eigh_vs_power", "timeout"), ("environment", "ok")]
    finally:
        torch.set_num_threads(threads)
