"""Latent declarations and probes, builtin:hierarchy, and the study's sign-flip + Holm verdicts."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.config_utils import ConfigError
from maskkit.lab.latents import latent_score, probe_latents
from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.levels import best_ratio_sentences, by_level, level_scores
from maskkit.lab.study.report import build_report
from maskkit.lab.study.results import add_p_values, read_results, write_results
from maskkit.lab.study.stats import holm, paired_comparison, sign_flip_p
from maskkit.lab.study.tables import study_comparisons
from maskkit.modality import Latent, MaskkitDataset

runner = CliRunner()


# --------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("diffs", [[0.012, -0.004, 0.020], [0.3, 0.1, -0.2, 0.05, 0.07], [0.0, 0.0, 0.0],
                                   [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]])
def test_sign_flip_p_equals_brute_force_and_scipy(diffs):
    d = np.asarray(diffs)
    means = [abs(np.mean(np.asarray(signs) * d)) for signs in itertools.product((1, -1), repeat=len(d))]
    brute = np.mean([m >= abs(d.mean()) - 1e-15 for m in means])
    assert sign_flip_p(diffs) == pytest.approx(brute, abs=1e-12)
    if np.any(d):
        ref = sps.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                   alternative="two-sided").pvalue
        assert sign_flip_p(diffs) == pytest.approx(ref, abs=1e-12)


def test_the_issue_example_gets_p_one_half_and_no_verdict():
    pc = paired_comparison({0: 0.812, 1: 0.796, 2: 0.820}, {0: 0.8, 1: 0.8, 2: 0.8}, masker="a", reference="r",
                           metric="linear_acc")
    assert pc.p_value == pytest.approx(0.5) and pc.verdict == "no difference detectable with 3 seeds"


def test_holm_matches_a_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, float("nan"), 0.6])  # NaN stays NaN and does not count: m = 2
    assert out[0] == pytest.approx(0.4) and np.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert holm([0.5, 0.9, 0.7]) == pytest.approx([1.0, 1.0, 1.0])


def _rows(maskers: dict[str, list[float]]) -> list[dict]:
    rows = []
    for method, accs in maskers.items():
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{method}__s{seed}", "arm": "pretrained", "method": method, "masker": method,
                         "seed": seed, "mask_ratio": 0.75, "patch_size": 4, "linear_acc": acc,
                         "knn_acc": acc - 0.05, "recon_shared": 0.5 - acc / 10})
    return rows


def test_holm_adjusted_p_decides_the_verdict():
    # six seeds, all differences positive: one comparison alone has p = 2/64 < 0.05 ...
    a = {s: 0.51 + s / 100 for s in range(6)}
    alone = paired_comparison(a, {s: 0.5 for s in range(6)}, masker="a", reference="r", metric="linear_acc")
    assert alone.p_value == pytest.approx(2 / 64) and alone.verdict == "better"
    # ... but the study makes three comparisons (linear, k-NN, reconstruction), so Holm gives 3 x 2/64 > 0.05
    study = study_comparisons(_rows({"r": [0.5] * 6, "a": list(a.values())}), ["r", "a"], "r")
    linear = next(c for c in study if c.metric == "linear_acc")
    assert linear.p_value == pytest.approx(2 / 64) and linear.p_holm == pytest.approx(3 * 2 / 64)
    assert all(c.verdict == "no difference detectable with 6 seeds" for c in study)


def test_three_masker_study_carries_p_holm_in_results_and_report(tmp_path):
    study = StudyConfig(modality="toy", maskers=["random", "block", "noise"], seeds=3, out=str(tmp_path))
    rows = _rows({"random": [0.80, 0.81, 0.82], "block": [0.83, 0.86, 0.84], "noise": [0.79, 0.82, 0.80]})
    add_p_values(rows, study)
    write_results(tmp_path / "results.csv", rows)
    back = read_results(tmp_path / "results.csv")
    block = [r for r in back if r["method"] == "block"]
    # block - random = +0.03, +0.05, +0.02: all positive, p = 2/8; 6 comparisons in the study
    assert all(r["p/linear_acc"] == pytest.approx(0.25) for r in block)
    assert all(r["p_holm/linear_acc"] == pytest.approx(1.0) for r in block)  # 6 x 0.25, capped at 1
    assert all(math.isnan(r["p_holm/linear_acc"]) for r in back if r["method"] == "random")
    text, comparisons = build_report(study, back, figures={})
    assert len(comparisons) == 6 and all(c.p_holm >= c.p_value for c in comparisons)
    assert "| p | p_holm | verdict |" in text and "Holm-adjusted p" in text
    assert all(c.verdict.startswith("no difference detectable") for c in comparisons)


def test_bootstrap_below_ten_seeds_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="`interval` bootstrap needs at least 10 seeds"):
        StudyConfig(modality="toy", seeds=3, interval="bootstrap")
    StudyConfig(modality="toy", seeds=10, interval="bootstrap")
    result = runner.invoke(app, ["compare", "--modality", "toy", "--seeds", "3", "--interval", "bootstrap",
                                 "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "--interval bootstrap needs at least 10 seeds" in lines[0]
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- probes
class _Table(MaskkitDataset):
    latents = (Latent("c", "categorical", 1), Latent("x", "continuous", 2), Latent("xy", "continuous", 3))

    def __init__(self, values):
        self.values = values

    def __len__(self):
        return len(self.values["c"])

    def latent_values(self):
        return self.values


def test_latent_scores_follow_what_the_features_hold():
    rng = np.random.default_rng(0)
    n = 300
    c = rng.integers(0, 3, n)
    x = rng.normal(size=n)
    xy = rng.normal(size=(n, 2))
    informative = np.column_stack([np.eye(3)[c], x, xy, rng.normal(size=(n, 5))])
    noise = rng.normal(size=(n, 8))
    dataset = _Table({"c": c, "x": x, "xy": xy})
    out = probe_latents({"pretrained": informative, "random-init": noise}, dataset, np.arange(n), seed=0)
    by_name = {r.name: r for r in out}
    assert [r.level for r in out] == [1, 2, 3] and by_name["c"].metric == "accuracy"
    assert by_name["c"].pretrained == 1.0 and by_name["c"].random_init < 0.5
    assert by_name["x"].pretrained > 0.99 and by_name["x"].random_init < 0.05
    assert by_name["xy"].pretrained > 0.99 and np.isnan(by_name["xy"].raw_input)
    # R² is scikit-learn's, averaged over columns and folds
    half = latent_score(np.column_stack([xy[:, 0], rng.normal(size=(n, 3))]), xy, Latent("xy", "continuous", 1), 0)
    assert 0.4 < half < 0.55


# --------------------------------------------------------------------------- builtin:hierarchy
def test_hierarchy_is_deterministic_and_records_every_latent_with_its_level():
    from maskkit.modalities.image.hierarchy import HIERARCHY_LATENTS, PART_SHAPES, hierarchy_latents
    from maskkit.modalities.image.sources import open_dataset

    ds = open_dataset("builtin:hierarchy", size=(16, 16), channels=None, augment=False, policy="shift", seed=0)
    again = open_dataset("builtin:hierarchy", size=(16, 16), channels=None, augment=False, policy="shift", seed=3)
    assert len(ds) == 1200 and ds[5][0].shape == (3, 16, 16)
    assert np.array_equal(ds.raw(7).numpy(), again.raw(7).numpy())
    values = ds.latent_values()
    assert {d.name for d in ds.latents} == set(values) and {d.level for d in ds.latents} == {1, 2, 3}
    assert np.array_equal(values["layout"], ds.labels) and np.bincount(ds.labels).tolist() == [300] * 4
    assert values["offset"].shape == (1200, 2) and len(HIERARCHY_LATENTS) == 8
    # level 2 is drawn given level 1: part a takes the layout's preferred shape 0.6 + 0.4/3 of the time
    preferred = np.asarray([0, 1, 2, 0])[values["layout"]]
    assert np.mean(values["shape_a"] == preferred) == pytest.approx(0.6 + 0.4 / len(PART_SHAPES), abs=0.04)
    assert hierarchy_latents() is hierarchy_latents()


def test_list_shows_hierarchy():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0 and "builtin:hierarchy" in result.output


def test_level_scores_and_words_from_results_rows(tmp_path):
    levels = by_level([{"name": "a", "kind": "categorical", "level": 1, "metric": "accuracy"},
                       {"name": "b", "kind": "continuous", "level": 2, "metric": "r2"},
                       {"name": "c", "kind": "continuous", "level": 2, "metric": "r2"}])
    rows = []
    for ratio, (a, b) in {0.25: (0.5, 0.9), 0.75: (0.8, 0.6)}.items():
        for seed in (0, 1):
            rows.append({"method": "random", "arm": "pretrained", "seed": seed, "mask_ratio": ratio,
                         "patch_size": 4, "latent/a": a + seed / 100, "latent/b": b, "latent/c": b - 0.2})
            rows.append({"method": "random-init", "arm": "random-init", "seed": seed, "mask_ratio": ratio,
                         "patch_size": 4, "latent/a": 0.3, "latent/b": 0.1, "latent/c": 0.1})
    assert level_scores(rows[:1], "random", levels[2]) == {0: pytest.approx(0.8)}
    study = StudyConfig(modality="toy", maskers=["random"], seeds=2, out=str(tmp_path))
    (sentence,) = best_ratio_sentences(study, rows, levels)
    assert "level 1 (a) is recovered best at mask ratio 0.75 (0.805 ± 0.007; 0.25: 0.505; random-init 0.300)" \
        in sentence
    assert "level 2 (b, c) is recovered best at mask ratio 0.25" in sentence


def test_levels_section_and_figure_from_a_study_directory(tmp_path):
    import json as _json

    from maskkit.lab.study.grid import BaselineSpec, baseline_path
    from maskkit.lab.study.levels import LEVEL_FIGURE, level_figure, levels_section

    study = StudyConfig(modality="toy", maskers=["random"], seeds=2, mask_ratios=[0.25, 0.75], patch_sizes=[2, 4],
                        out=str(tmp_path))
    declared = [{"name": "a", "kind": "categorical", "level": 1, "metric": "accuracy", "pretrained": None,
                 "random-init": 0.3, "raw-input": 0.2}]
    path = baseline_path(study, BaselineSpec(0, 2))
    path.parent.mkdir(parents=True)
    path.write_text(_json.dumps({"latents": declared}))
    rows = []
    for ratio in (0.25, 0.75):
        for patch in (2, 4):
            for seed in (0, 1):
                common = {"seed": seed, "mask_ratio": ratio, "patch_size": patch}
                rows += [{"method": "random", "arm": "pretrained", "latent/a": ratio + patch / 10, **common},
                         {"method": "random-init", "arm": "random-init", "latent/a": 0.3, **common},
                         {"method": "raw-input", "arm": "raw-input", "latent/a": 0.2, **common}]
    figure = level_figure(study, rows)
    assert figure == tmp_path / LEVEL_FIGURE and figure.stat().st_size > 1000
    text = "\n".join(levels_section(study, rows, figure))
    cells = ["0.450", "0.650", "0.950", "1.150", "0.300", "0.300", "0.200"]  # 4 settings, random-init x 2, raw
    assert "| `a` | 1 | accuracy | " + " | ".join(f"{c} ± 0.000" for c in cells) + " |" in text
    assert "`random`, patch size 4: level 1 (a) is recovered best at mask ratio 0.75" in text
