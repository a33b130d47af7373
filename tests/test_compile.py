"""Opt-in torch.compile smoke test (cold compiles take ~80 s on CPU): MASKKIT_TEST_COMPILE=1."""

import os

import pytest

from maskkit.train.trainer import run_training

pytestmark = [
    pytest.mark.compile,
    pytest.mark.skipif(os.environ.get("MASKKIT_TEST_COMPILE") != "1",
                       reason="set MASKKIT_TEST_COMPILE=1 to run the torch.compile smoke test"),
]


@pytest.mark.parametrize("masker", ["random", "block", "self-guided"])
def test_compiled_training_step_runs(toy_config, tmp_path, masker):
    options = {"start": "epoch", "start_epoch": 0} if masker == "self-guided" else {}
    result = run_training(toy_config(out=str(tmp_path / masker), compile=True, masker=masker,
                                     masker_options=options, max_steps_per_epoch=3))
    assert result.steps == 3 and result.final_loss == result.final_loss  # finite, not NaN
