"""Several devices: one spawned worker process per device, one run per worker at a time."""

from maskkit.lab.study import StudyConfig, run_study
from maskkit.lab.study.results import read_results
from maskkit.lab.study.runner import plugin_modules


def test_two_cpu_workers_finish_every_run(tmp_path):
    study = StudyConfig(modality="toy", model="nano", maskers=["random"], seeds=2, epochs=1, batch_size=8,
                        max_steps_per_epoch=2, out=str(tmp_path / "study"), devices=["cpu", "cpu"],
                        progress=False, eval_max_samples=40, recon_max_samples=16, curve_every=0,
                        analysis=False, train_options={"log_every": 1})
    assert "toy" in plugin_modules(study)  # the toy modality is registered in code: workers import it
    outcome = run_study(study)
    assert outcome.progress.failures == [] and outcome.progress.trained == 2
    rows = read_results(outcome.results)
    assert sorted(r["seed"] for r in rows if r["arm"] == "pretrained") == [0.0, 1.0]
    assert all(r["steps"] == 2 and r["linear_acc"] >= 0 for r in rows if r["arm"] == "pretrained")
    assert {r["method"] for r in rows} == {"random", "random-init", "raw-input"}
