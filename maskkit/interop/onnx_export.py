"""ONNX export (``maskkit.export(run, "onnx", out)``): the encoder as one ONNX graph with a dynamic batch.

The graph computes ``model.encode``: samples ``(batch, *sample_shape)`` -> features ``(batch, prefix + N, D)``
(CLS first when the model has one, final LayerNorm applied), traced with ``torch.onnx.export(dynamo=True)``
at batch 2 (torch.export fixes sizes 0 and 1, so a batch-1 trace would not generalise). It needs the
``onnx`` and ``onnxscript`` packages (``pip install 'maskkit[onnx]'``); onnxruntime runs the result.
Tokenizers with a fixed sample shape export (image, video, spectrogram); point clouds group points by
farthest-point sampling, which this exporter does not cover.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from maskkit.config_utils import ConfigError
from maskkit.safe_io import refuse_planted, write_text

#: the ONNX operator set written (onnxruntime >= 1.17 runs it)
OPSET = 18


def sample_shape(model: Any, modality: Any) -> tuple[int, ...]:
    """(channels, *size) of one sample as the tokenizer takes it; a ConfigError where that is not fixed."""
    tok = model.tokenizer
    size = getattr(tok, "input_size", None) or getattr(tok, "image_size", None)
    channels = getattr(tok, "channels", None)
    if size is None or channels is None:
        raise ConfigError(f"`format` onnx needs a tokenizer with a fixed sample shape (channels and size); "
                          f"modality {modality.name!r} has none, export it with `format` safetensors")
    return (int(channels), *(int(s) for s in size))


class EncoderGraph(nn.Module):
    """What the ONNX graph computes: ``model.encode``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.encode(x)


def _need_onnx() -> None:
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise ConfigError(f"`format` onnx needs the {package} package: pip install 'maskkit[onnx]' "
                              f"(or pip install {package})") from None


def export_onnx(model: Any, modality: Any, out: Path, source: dict[str, Any],
                normalization: dict[str, Any]) -> list[Path]:
    """Write ``encoder.onnx`` (input ``samples``, output ``features``, dynamic ``batch``) and ``config.json``."""
    _need_onnx()
    shape = sample_shape(model, modality)
    out.mkdir(parents=True, exist_ok=True)
    graph = EncoderGraph(model.float().eval())
    example = torch.zeros(2, *shape)
    batch = torch.export.Dim("batch", min=1, max=65536)
    exporter_log = logging.getLogger("torch.onnx")  # notes about torchvision ops a ViT never uses
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # the exporter's deprecation notes are torch's business, not the user's
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=["samples"],
                                        output_names=["features"], dynamic_shapes={"x": {0: batch}},
                                        opset_version=OPSET, verbose=False)
    finally:
        exporter_log.setLevel(level)
    path = out / "encoder.onnx"
    refuse_planted(path)  # the exporter writes the file itself: a planted link there is refused first
    program.save(str(path))
    with torch.no_grad():
        features = graph(example).shape
    config = {"library": "maskkit", "format": "onnx", "opset": OPSET, "config": source,
              "input": {"name": "samples", "shape": ["batch", *shape]},
              "output": {"name": "features", "shape": ["batch", *features[1:]],
                         "prefix_tokens": int(getattr(model, "num_prefix", 0))},
              "normalization": normalization}
    write_text(out / "config.json", json.dumps(config, indent=2, default=str))
    return [path, out / "config.json"]
