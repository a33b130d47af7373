"""``maskkit export``: a run's encoder as timm, Hugging Face, plain safetensors or ONNX files.

- ``timm``: ``model.safetensors`` with timm ``VisionTransformer`` keys and ``config.json`` whose
  ``timm_kwargs`` rebuild it: ``VisionTransformer(**timm_kwargs)`` then ``load_state_dict``. Needs
  only ``safetensors`` to write (timm itself is needed to *use* the files).
- ``hf``: a directory ``transformers.AutoModel.from_pretrained`` loads: a ``ViTModel``, or with
  ``decoder=True`` a ``ViTMAEForPreTraining`` checkpoint (``AutoModel`` gives the ``ViTMAEModel``
  encoder; ``ViTMAEForPreTraining`` adds the decoder). Includes ``preprocessor_config.json``.
- ``safetensors``: every modality; maskkit's own keys plus ``config.json`` with the run's resolved
  configuration, which ``init_from`` and ``maskkit.interop.load_exported`` read back.
- ``onnx``: the encoder as ``encoder.onnx`` with a dynamic batch (see ``maskkit.interop.onnx_export``).

Every format writes the input normalisation the encoder expects (``normalization`` in config.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from maskkit.config_utils import ConfigError, build_dataclass
from maskkit.interop.onnx_export import export_onnx
from maskkit.interop.resize import load_resized
from maskkit.model import keys as K
from maskkit.model.mae import ModelConfig
from maskkit.safe_io import write_bytes, write_text
from maskkit.train.build import build_modality, build_model
from maskkit.train.checkpoint import CheckpointError

FORMATS = ("timm", "hf", "safetensors", "onnx")


def _need(package: str, fmt: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"`format` {fmt} needs the {package} package: pip install 'maskkit[interop]' "
                          f"(or pip install {package})") from None


def _save(state: dict[str, torch.Tensor], path: Path, fmt: str, metadata: dict[str, str] | None = None) -> None:
    _need("safetensors", fmt)
    from safetensors.torch import save

    tensors = {k: v.detach().float().contiguous().cpu() for k, v in state.items()}
    data = save(tensors, metadata=metadata or {"format": "pt"})
    write_bytes(path, data)  # temp file + rename: a planted link at `path` is refused, never written through


def normalization(modality: Any) -> dict[str, Any]:
    """What the encoder expects as input, in words and numbers (from the run's modality options)."""
    opts = modality.options_dict()
    name = getattr(modality, "name", "")
    if name == "image" or "pixel_mean" in opts:
        mean, std = opts.get("pixel_mean"), opts.get("pixel_std")
        if not opts.get("normalize", True):
            mean, std = [0.0] * int(opts.get("channels") or 1), [1.0] * int(opts.get("channels") or 1)
        return {"input": "pixels scaled to [0, 1], then (x - mean) / std per channel", "mean": mean, "std": std}
    keys = {k: v for k, v in opts.items() if k.startswith(("norm_", "pixel_", "sample_rate", "n_mels", "hop"))}
    return {"input": f"the {name} modality's samples as its loader builds them", **keys}


def _image_shape(model: Any, modality: Any) -> tuple[int, int, int, int]:
    tok = model.tokenizer
    if not hasattr(tok, "image_size") or tok.layout.axes != ("h", "w") or not isinstance(tok.patch_size, int):
        raise ConfigError(f"`format` timm/hf exports image encoders (ViT); modality {modality.name!r} can be "
                          f"exported with `format` safetensors")
    h, w = tok.image_size
    return h, w, int(tok.patch_size), int(tok.channels)


def timm_kwargs(model: Any, modality: Any) -> dict[str, Any]:
    h, w, p, c = _image_shape(model, modality)
    cfg = model.config
    return {"img_size": [h, w] if h != w else h, "patch_size": p, "in_chans": c, "num_classes": 0,
            "global_pool": "token" if model.num_prefix else "avg", "embed_dim": cfg.embed_dim,
            "depth": cfg.depth, "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio, "qkv_bias": True,
            "class_token": bool(model.num_prefix), "no_embed_class": False, "fc_norm": False}


def export_timm(model: Any, modality: Any, out: Path, source: dict[str, Any]) -> list[Path]:
    _need("safetensors", "timm")
    kwargs = timm_kwargs(model, modality)
    out.mkdir(parents=True, exist_ok=True)
    _save(K.to_timm(model), out / "model.safetensors", "timm")
    norm = normalization(modality)
    h, w, _, c = _image_shape(model, modality)
    config = {"architecture": "vit_maskkit", "timm_kwargs": kwargs, "num_features": model.config.embed_dim,
              "pretrained_cfg": {"input_size": [c, h, w], "mean": norm.get("mean"), "std": norm.get("std"),
                                 "interpolation": "bicubic", "crop_pct": 1.0},
              "normalization": norm, "maskkit": source,
              "usage": "timm.models.vision_transformer.VisionTransformer(**timm_kwargs); "
                       "load_state_dict(safetensors.torch.load_file('model.safetensors')); "
                       "forward_features(x) equals maskkit's model.encode(x)"}
    write_text(out / "config.json", json.dumps(config, indent=2))
    return [out / "model.safetensors", out / "config.json"]


def hf_config(model: Any, modality: Any, decoder: bool, mask_ratio: float) -> dict[str, Any]:
    h, w, p, c = _image_shape(model, modality)
    if not model.num_prefix:
        raise ConfigError("`format` hf: Hugging Face ViT always has a CLS token, but this model was built "
                          "with use_cls_token=false; use `format` timm or safetensors")
    cfg = model.config
    out = {"hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.depth, "num_attention_heads": cfg.num_heads,
           "intermediate_size": int(cfg.embed_dim * cfg.mlp_ratio), "hidden_act": "gelu",
           "layer_norm_eps": 1e-6, "image_size": [h, w] if h != w else h, "patch_size": p, "num_channels": c,
           "qkv_bias": True, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
           "initializer_range": 0.02}
    if decoder:
        out.update({"model_type": "vit_mae", "architectures": ["ViTMAEForPreTraining"],
                    "decoder_hidden_size": cfg.decoder_dim, "decoder_num_hidden_layers": cfg.decoder_depth,
                    "decoder_num_attention_heads": cfg.decoder_heads,
                    "decoder_intermediate_size": int(cfg.decoder_dim * cfg.mlp_ratio), "mask_ratio": mask_ratio,
                    "norm_pix_loss": bool(modality.options_dict().get("norm_pix_loss", True))})
    else:
        out.update({"model_type": "vit", "architectures": ["ViTModel"]})
    return out


def export_hf(model: Any, modality: Any, out: Path, source: dict[str, Any], decoder: bool = False,
              mask_ratio: float = 0.75) -> list[Path]:
    _need("safetensors", "hf")
    config = hf_config(model, modality, decoder, mask_ratio)
    out.mkdir(parents=True, exist_ok=True)
    state = K.to_hf_vit(model, prefix="vit." if decoder else "")
    if decoder:
        state.update(K.to_hf_vitmae_decoder(model))
    _save(state, out / "model.safetensors", "hf")
    norm = normalization(modality)
    config["maskkit"] = source
    config["normalization"] = norm
    write_text(out / "config.json", json.dumps(config, indent=2))
    h, w, _, _ = _image_shape(model, modality)
    processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True,
                 "size": {"height": h, "width": w}, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
                 "do_normalize": norm.get("mean") is not None, "image_mean": norm.get("mean"),
                 "image_std": norm.get("std")}
    write_text(out / "preprocessor_config.json", json.dumps(processor, indent=2))
    return [out / "model.safetensors", out / "config.json", out / "preprocessor_config.json"]


def export_safetensors(model: Any, modality: Any, out: Path, source: dict[str, Any]) -> list[Path]:
    _need("safetensors", "safetensors")
    out.mkdir(parents=True, exist_ok=True)
    _save(model.state_dict(), out / "model.safetensors", "safetensors", {"format": "pt", "library": "maskkit"})
    config = {"library": "maskkit", "config": source, "normalization": normalization(modality)}
    write_text(out / "config.json", json.dumps(config, indent=2, default=str))
    return [out / "model.safetensors", out / "config.json"]


#: what makes a folder a training run's or a study's own (an export's config.json would replace theirs)
OWNED_NAMES = ("checkpoints", "metrics.jsonl", "summary.json", "study.json", ".maskkit.lock")


def check_export_target(out: Path) -> None:
    """Refuse, before any work, a target that is a file or the folder of a run or a study."""
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"`out` {out} exists and is not a folder; export into a folder")
    owned = [name for name in OWNED_NAMES if os.path.lexists(out / name)]
    if owned:
        raise ConfigError(f"`out` {out} is the folder of a run or study (it holds {owned[0]}); exporting there "
                          f"would replace its config.json: use a folder of its own (default RUN/export-FORMAT)")


def export_run(run: str | Path, fmt: str, out: str | Path, overrides: dict[str, Any] | None = None,
               decoder: bool = False) -> list[Path]:
    """Export the run (directory or checkpoint) in ``fmt``, optionally at another input size."""
    if fmt not in FORMATS:
        raise ConfigError(f"`format` must be one of {', '.join(FORMATS)}, got {fmt!r}")
    check_export_target(Path(out))
    model, modality, config, ckpt = load_resized(run, overrides, "cpu")
    model = model.float().eval()
    source = dict(ckpt["config"])
    target = Path(out)
    if fmt == "timm":
        return export_timm(model, modality, target, source)
    if fmt == "hf":
        return export_hf(model, modality, target, source, decoder=decoder,
                         mask_ratio=float(source.get("mask_ratio") or 0.75))
    if fmt == "onnx":
        return export_onnx(model, modality, target, source, normalization(modality))
    return export_safetensors(model, modality, target, source)


def load_exported(directory: str | Path, device: str | torch.device = "cpu"):
    """A model from ``export_run(..., "safetensors", ...)``: (model, modality)."""
    d = Path(directory)
    try:
        meta = json.loads((d / "config.json").read_text())["config"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{d}: not a maskkit safetensors export ({exc})") from None
    _need("safetensors", "safetensors")
    from safetensors.torch import load_file

    modality = build_modality(meta["modality"], meta.get("modality_options", {}))
    model = build_model(modality, build_dataclass(ModelConfig, meta["resolved_model"]))
    model.load_state_dict(load_file(str(d / "model.safetensors")))
    return model.to(device).eval(), modality
