"""The example third-party package (examples/timeseries_modality) plugs in through entry points only.

CI installs it (`pip install -e examples/timeseries_modality`); without it these tests skip.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("maskkit_timeseries") is None,
    reason="example package not installed: pip install -e examples/timeseries_modality")

HAS_CLI = importlib.util.find_spec("maskkit.cli.app") is not None


def test_registered_only_through_entry_points() -> None:
    from maskkit.registry import get_masker, get_modality, modality_names

    names = {ep.name: ep.value for ep in entry_points(group="maskkit.modalities")}
    assert names.get("timeseries") == "maskkit_timeseries:TimeSeriesModality"
    assert "timeseries" in modality_names()
    cls = get_modality("timeseries")
    assert cls.__module__.startswith("maskkit_timeseries") and cls.name == "timeseries"
    span = get_masker("ts-span")
    assert span.__module__ == "maskkit_timeseries.maskers"
    # maskkit itself never names the package
    root = Path(__file__).resolve().parents[1]
    for folder in ("maskkit", "modalities", "cli"):
        for path in (root / folder).rglob("*.py"):
            assert "maskkit_timeseries" not in path.read_text(), path


def test_dataset_tokenizer_round_trip_and_layout() -> None:
    from maskkit.registry import get_modality

    modality = get_modality("timeseries")()
    train = modality.build_dataset(None, train=True, seed=0)
    test = modality.build_dataset("builtin:signals", train=False, seed=0)
    assert len(train) == 800 and len(test) == 200 and train.num_classes == 8
    a, label = train[3]
    assert a.shape == (256,) and torch.equal(train[3][0], a) and 0 <= label < 8
    train.set_epoch(1)
    assert not torch.equal(train[3][0], a)
    x = torch.stack([test[i][0] for i in range(4)])
    tok = modality.build_tokenizer(32)
    tb = tok.tokenize(x)
    assert tb.layout.grid == (16,) and tb.layout.axes == ("time",)
    assert tb.embeddings.shape == (4, 16, 32) and tb.targets.shape == (4, 16, 16)
    assert torch.equal(tok.untokenize(tb.targets, tb), x)
    assert tok.build_position_embedding(24)(tb.positions).shape[-2:] == (16, 24)
    assert modality.raw_features(x).shape == (4, 129)


def test_span_masker_exact_contiguous() -> None:
    from maskkit.maskers.base import MaskContext
    from maskkit.registry import build_masker
    from maskkit.tokens import TokenLayout

    masker = build_masker("ts-span")
    layout = TokenLayout.from_grid((16,), ("time",))
    ctx = MaskContext(batch_size=5, num_tokens=16, mask_ratio=0.75, layout=layout,
                      positions=torch.zeros(16, 1), generator=torch.Generator().manual_seed(0),
                      device=torch.device("cpu"))
    plan = masker(ctx)
    plan.validate(16)
    hidden = plan.ids_mask.sort(dim=1).values
    assert (hidden.diff(dim=1) == 1).all() and plan.n_mask == 12


def test_bad_options_and_files(tmp_path: Path) -> None:
    from maskkit.config_utils import ConfigError
    from maskkit.modality import DataError
    from maskkit.train.build import build_modality

    with pytest.raises(ConfigError, match="multiple of `patch_size`"):
        build_modality("timeseries", {"length": "100", "patch_size": "16"})
    modality = build_modality("timeseries", {"length": "64", "patch_size": "8"})
    (tmp_path / "up").mkdir()
    np.save(tmp_path / "up" / "a.npy", np.linspace(0, 1, 80))
    np.save(tmp_path / "up" / "short.npy", np.zeros(10))
    with pytest.raises(DataError, match="short.npy: 10 samples"):
        modality.build_dataset(str(tmp_path), train=True)
    ds = modality.build_dataset(str(tmp_path), train=False, on_bad_file="skip")
    assert len(ds) == 1 and ds[0][0].shape == (64,) and ds.class_names == ["up"]


@pytest.mark.skipif(not HAS_CLI, reason="the maskkit CLI (cli/app.py) is not available")
@pytest.mark.parametrize("masker", ["random", "ts-span", "self-guided"])
def test_cli_trains_one_epoch(tmp_path: Path, masker: str) -> None:
    from typer.testing import CliRunner

    from maskkit.cli.app import app
    from maskkit.registry import masker_names

    assert masker in masker_names()

    out = tmp_path / "run"
    # self-guided: informed masking from the first step, so the feature path really runs
    extra = ["-O", "start=epoch", "-O", "start_epoch=0"] if masker == "self-guided" else []
    result = CliRunner().invoke(app, [
        "train", "--modality", "timeseries", "--masker", masker, *extra, "--model", "nano", "--epochs", "1",
        "--batch-size", "16", "--max-steps-per-epoch", "2", "--device", "cpu", "--out", str(out),
        "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "last.pt").exists() and (out / "config.json").exists()
    pngs = list(out.glob("*.png"))
    assert pngs and pngs[0].read_bytes()[:4] == b"\x89PNG"
