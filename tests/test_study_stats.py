"""Study statistics, configuration, grid, budget notes and report-vs-CSV, without training anything."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from maskkit.config_utils import ConfigError
from maskkit.lab.study.budget import budget_notes
from maskkit.lab.study.config import StudyConfig, load_study_toml, merge_study, parse_masker_options
from maskkit.lab.study.grid import Cell, RunSpec, cells, plan_baselines, plan_runs, train_config
from maskkit.lab.study.report import build_report
from maskkit.lab.study.results import read_results, write_results
from maskkit.lab.study.stats import bootstrap_interval, mean_sd, paired_comparison, t_interval
from maskkit.lab.study.tables import by_cell, fmt_spread, paired, spread


# --------------------------------------------------------------------------- statistics
def test_t_interval_matches_scipy():
    values = [0.012, -0.004, 0.021, 0.007, 0.015]
    low, high = t_interval(values, 0.95)
    arr = np.asarray(values)
    ref = sps.t.interval(0.95, len(arr) - 1, loc=arr.mean(), scale=sps.sem(arr))
    assert low == pytest.approx(ref[0], abs=1e-12) and high == pytest.approx(ref[1], abs=1e-12)
    assert t_interval([0.3], 0.95) == pytest.approx((math.nan, math.nan), nan_ok=True)


def test_paired_difference_hand_computed():
    pc = paired_comparison({0: 0.80, 1: 0.82, 2: 0.85}, {0: 0.78, 1: 0.79, 2: 0.80},
                           masker="sg", reference="random", metric="linear_acc")
    # differences 0.02, 0.03, 0.05: mean 1/30, sd 0.0152753, t(0.975, 2) = 4.3026527
    assert pc.differences == pytest.approx([0.02, 0.03, 0.05])
    assert pc.mean == pytest.approx(0.0333333, abs=1e-6)
    assert pc.sd == pytest.approx(0.0152753, abs=1e-6)
    half = 4.3026527 * 0.0152753 / math.sqrt(3)
    assert pc.low == pytest.approx(pc.mean - half, abs=1e-6) and pc.high == pytest.approx(pc.mean + half, abs=1e-6)
    assert pc.verdict == "no difference detectable with 3 seeds"


def test_verdicts_follow_the_sign_flip_p_and_the_metric_direction():
    six = range(6)  # the smallest two-sided sign-flip p with n seeds is 2 / 2^n: 0.031 at six
    better = paired_comparison({s: 0.90 + s / 1000 for s in six}, {s: 0.85 for s in six},
                               masker="a", reference="r", metric="linear_acc")
    assert better.low > 0 and better.p_value == pytest.approx(2 / 64) and better.verdict == "better"
    worse = paired_comparison({s: 0.80 + s / 1000 for s in six}, {s: 0.85 for s in six},
                              masker="a", reference="r", metric="linear_acc")
    assert worse.verdict == "worse"
    # a loss: a higher value is worse
    loss = paired_comparison({s: 0.50 + s / 1000 for s in six}, {s: 0.40 for s in six},
                             masker="a", reference="r", metric="recon_shared", higher_is_better=False)
    assert loss.mean > 0 and loss.verdict == "worse"
    # three seeds can never reach p < 0.05, whatever the t interval says
    three = paired_comparison({0: 0.90, 1: 0.91, 2: 0.905}, {0: 0.85, 1: 0.85, 2: 0.85},
                              masker="a", reference="r", metric="linear_acc")
    assert three.low > 0 and three.p_value == pytest.approx(0.25)
    assert three.verdict == "no difference detectable with 3 seeds"


def test_pairing_uses_common_finite_seeds_only():
    pc = paired_comparison({0: 0.8, 1: 0.9, 2: float("nan")}, {1: 0.7, 2: 0.7, 3: 0.1},
                           masker="a", reference="r", metric="linear_acc")
    assert pc.seeds == [1] and pc.differences == pytest.approx([0.2])
    assert math.isnan(pc.low) and pc.verdict == "no difference detectable with 1 seed"


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean():
    values = [0.01, 0.03, 0.02, 0.05, 0.04, 0.02, 0.03, 0.01, 0.04, 0.06]
    a = bootstrap_interval(values, 0.95, 2000, seed=0)
    assert a == bootstrap_interval(values, 0.95, 2000, seed=0)
    assert min(values) <= a[0] <= np.mean(values) <= a[1] <= max(values)
    pc = paired_comparison({i: v for i, v in enumerate(values)}, {i: 0.0 for i in range(10)}, masker="a",
                           reference="r", metric="linear_acc", method="bootstrap", bootstrap_samples=2000)
    assert pc.verdict == "better" and pc.method == "bootstrap"


def test_mean_sd_skips_missing_values():
    s = mean_sd([1.0, float("nan"), 3.0])
    assert (s.mean, s.n) == (2.0, 2) and s.sd == pytest.approx(math.sqrt(2))
    assert mean_sd([]).n == 0 and math.isnan(mean_sd([5.0]).sd)


# --------------------------------------------------------------------------- configuration
def test_study_config_defaults_and_validation():
    study = StudyConfig(modality="toy", maskers=["random", "block"], seeds=3)
    assert study.seed_list == [0, 1, 2]
    with pytest.raises(ConfigError, match="`reference` random is not among"):
        StudyConfig(modality="toy", maskers=["block", "noise-green"])
    with pytest.raises(ConfigError, match="`devices`"):
        StudyConfig(devices=["gpu0"])
    with pytest.raises(ConfigError, match=r"\[train\] seed: the study sets this itself"):
        StudyConfig(train_options={"seed": 3})
    with pytest.raises(ConfigError, match="not a training option"):
        StudyConfig(train_options={"learning_rate": 3})
    with pytest.raises(ConfigError, match="`mask_ratios`"):
        StudyConfig(mask_ratios=[0.5, 1.2])
    with pytest.raises(ConfigError, match="masker_options for self-guided"):
        StudyConfig(maskers=["random"], masker_options={"self-guided": {"start_epoch": 1}})


def test_study_toml_and_cli_merge(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('modality = "toy"\nmaskers = ["random", "self-guided"]\nseeds = [0, 4]\nepochs = 2\n'
                    'mask-ratios = [0.5, 0.75]\n[masker_options.self-guided]\nstart_epoch = 1\n'
                    '[train]\nbase_lr = 0.001\n')
    values = load_study_toml(path)
    study = merge_study(values, {"epochs": 3, "maskers": None,
                                 "masker_options": parse_masker_options(["self-guided.hint_ratio=0.5"])})
    assert study.seed_list == [0, 4] and study.epochs == 3 and study.mask_ratios == [0.5, 0.75]
    assert study.masker_options == {"self-guided": {"start_epoch": 1, "hint_ratio": "0.5"}}
    assert study.train_options == {"base_lr": 0.001}
    # the command line picks other maskers: the file's options for the others are dropped
    narrowed = merge_study(values, {"maskers": "random,block"})
    assert narrowed.maskers == ["random", "block"] and narrowed.masker_options == {}
    bad = tmp_path / "bad.toml"
    bad.write_text("maskerz = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'maskerz'"):
        load_study_toml(bad)
    with pytest.raises(ConfigError, match="MASKER.key=value"):
        parse_masker_options(["start_epoch=3"])


def test_grid_crosses_maskers_seeds_ratios_and_patches(tmp_path):
    study = StudyConfig(modality="toy", maskers=["random", "block"], seeds=2, mask_ratios=[0.5, 0.75],
                        patch_sizes=[2, 4], out=str(tmp_path))
    runs = plan_runs(study)
    assert len(runs) == 2 * 2 * 2 * 2 and len({r.run_id for r in runs}) == len(runs)
    assert len(cells(study)) == 4 and len(plan_baselines(study)) == 2 * 2
    cfg = train_config(study, RunSpec("block", 1, Cell(0.5, 4)))
    assert (cfg.masker, cfg.seed, cfg.mask_ratio, cfg.modality_options["patch_size"]) == ("block", 1, 0.5, 4)
    assert cfg.epochs == study.epochs and cfg.out.endswith("block__r0.5_p4__s1")


def test_budget_notes():
    notes = budget_notes("self-guided", {"start": "epoch", "start_epoch": 50}, epochs=10)
    assert any("400" in n for n in notes) and any("start_epoch = 50" in n for n in notes)
    assert not any("start_epoch" in n for n in budget_notes("self-guided", {"start": "fraction",
                                                                             "start_epoch": 50}, 10))
    assert any("never started" in n for n in budget_notes("custom-thing", {}, 5, started_max=0.0))
    assert budget_notes("random", {}, epochs=800) == []


# --------------------------------------------------------------------------- report vs CSV
def _rows():
    rows = []
    accs = {"random": [0.80, 0.82, 0.81], "block": [0.83, 0.86, 0.84], "random-init": [0.79, 0.80, 0.78],
            "raw-input": [0.70, 0.70, 0.70]}
    for method, values in accs.items():
        for seed, acc in enumerate(values):
            arm = method if method in ("random-init", "raw-input") else "pretrained"
            row = {"run_id": f"{method}__r0.75__s{seed}", "arm": arm, "method": method,
                   "masker": method if arm == "pretrained" else "", "seed": seed, "mask_ratio": 0.75,
                   "patch_size": 4, "linear_acc": acc, "knn_acc": acc - 0.05, "epochs": 2 if arm == "pretrained" else 0,
                   "steps": 12 if arm == "pretrained" else 0, "samples_seen": 192, "wall_time": 3.5}
            if arm == "pretrained":
                row.update(recon_shared=0.5 + 0.01 * seed, recon_own=0.4, collapse="ok", worst_collapse="ok",
                           gain_linear=acc - accs["random-init"][seed])
            rows.append(row)
    return rows


def test_report_numbers_equal_the_csv(tmp_path):
    study = StudyConfig(modality="toy", maskers=["random", "block"], seeds=3, epochs=2, out=str(tmp_path))
    write_results(tmp_path / "results.csv", _rows())
    rows = read_results(tmp_path / "results.csv")
    text, comparisons = build_report(study, rows, figures={})
    (cell_rows,) = by_cell(rows).values()
    for method in ("random", "block", "random-init", "raw-input"):
        expected = fmt_spread(spread(cell_rows, method, "linear_acc"), 3)
        assert expected in text, method
    assert "**0.843 ± 0.015**" in text  # block: mean 0.8433, sd 0.0153, best linear probe
    pc = paired(cell_rows, "block", "random", "linear_acc")
    assert f"{pc.mean:+.4f}" in text and f"[{pc.low:+.4f}, {pc.high:+.4f}]" in text
    assert pc.mean == pytest.approx(np.mean([0.03, 0.04, 0.03]))
    assert pc.verdict in text and any(c.metric == "linear_acc" and c.masker == "block" for c in comparisons)
    assert "random-init encoder (no training)" in text and "raw input" in text
    assert "| `block__r0.75__s0` | 2 | 12 | 192 | 3.5 |" in text
    assert "below its design budget" in text


def test_a_run_with_the_preset_base_lr_matches_a_study_that_leaves_it_unset(tmp_path):
    """config.json records the resolved per-preset base lr; a re-run study (base_lr unset) must accept it."""
    import json

    from maskkit.config_utils import ConfigError
    from maskkit.lab.study.runner import check_run_matches
    from maskkit.train.config import TrainConfig

    want = TrainConfig(modality="image", model="micro", mask_ratio=0.75)
    saved = {**want.to_dict(), "model": "micro", "base_lr": 1.5e-4}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_run_matches(tmp_path, want)
    (tmp_path / "config.json").write_text(json.dumps({**saved, "base_lr": 1e-3}))
    with pytest.raises(ConfigError, match="base_lr"):
        check_run_matches(tmp_path, want)
