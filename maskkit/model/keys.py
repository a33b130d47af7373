"""Key maps between maskkit's encoder/decoder and timm's / Hugging Face's ViT and ViT-MAE.

The blocks are the same computation in all three: pre-norm, LayerNorm eps 1e-6, fused qkv with
bias (Hugging Face splits it into query/key/value), exact GELU MLP of width ``mlp_ratio * dim``, a
final LayerNorm over every token. Two conventions differ and are handled here:

- maskkit adds no position to the CLS token; timm and Hugging Face keep a (1, 1 + N, D) table whose
  first row is added to CLS. Export writes a zero first row; import folds that row into the CLS token
  (the sum is what the blocks see, so outputs are unchanged).
- maskkit's grid positions are sin-cos tables recomputed from the grid (not saved); exported files
  carry the table itself, and imported learned tables become ``pos_embed="learned"`` parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: maskkit block sub-keys -> Hugging Face ViTLayer sub-keys (qkv handled separately)
HF_LAYER = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def _with_cls_row(table: Tensor) -> Tensor:
    return torch.cat([table.new_zeros(1, 1, table.shape[-1]), table.reshape(1, -1, table.shape[-1])], dim=1)


def encoder_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """maskkit encoder tensors (tokenizer projection, CLS, blocks, norm) plus the position table
    under ``encoder_pos.table`` whether it is computed (sin-cos) or learned."""
    state = {k: v for k, v in model.state_dict().items()
             if k.startswith(("tokenizer.proj.", "blocks.", "norm.")) or k == "cls_token"}
    state["encoder_pos.table"] = model.encoder_pos.table.detach().reshape(1, -1, model.config.embed_dim)
    return state


def to_timm(model: torch.nn.Module) -> dict[str, Tensor]:
    """timm ``VisionTransformer`` state dict (no head: ``num_classes=0``)."""
    src = encoder_state(model)
    out: dict[str, Tensor] = {}
    for key, value in src.items():
        if key.startswith("tokenizer.proj."):
            out["patch_embed.proj." + key.split(".")[-1]] = value
        elif key == "encoder_pos.table":
            out["pos_embed"] = _with_cls_row(value) if model.num_prefix else value
        else:  # blocks.N.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2, norm, cls_token: same names
            out[key] = value
    return {k: v.contiguous().clone() for k, v in out.items()}


def _layer_to_hf(prefix_in: str, prefix_out: str, state: dict[str, Tensor], out: dict[str, Tensor],
                 dim: int) -> None:
    for sub, hf in HF_LAYER.items():
        for kind in ("weight", "bias"):
            out[f"{prefix_out}.{hf}.{kind}"] = state[f"{prefix_in}.{sub}.{kind}"]
    for kind in ("weight", "bias"):
        q, k, v = state[f"{prefix_in}.attn.qkv.{kind}"].split(dim, dim=0)
        for name, part in (("query", q), ("key", k), ("value", v)):
            out[f"{prefix_out}.attention.attention.{name}.{kind}"] = part


def to_hf_vit(model: torch.nn.Module, prefix: str = "") -> dict[str, Tensor]:
    """Hugging Face ``ViTModel`` / ``ViTMAEModel`` encoder keys (``prefix`` "vit." inside ViTMAEForPreTraining)."""
    d = model.config.embed_dim
    src = encoder_state(model)
    out = {f"{prefix}embeddings.cls_token": src["cls_token"],
           f"{prefix}embeddings.position_embeddings": _with_cls_row(src["encoder_pos.table"]),
           f"{prefix}embeddings.patch_embeddings.projection.weight": src["tokenizer.proj.weight"],
           f"{prefix}embeddings.patch_embeddings.projection.bias": src["tokenizer.proj.bias"],
           f"{prefix}layernorm.weight": src["norm.weight"], f"{prefix}layernorm.bias": src["norm.bias"]}
    for i in range(len(model.blocks)):
        _layer_to_hf(f"blocks.{i}", f"{prefix}encoder.layer.{i}", src, out, d)
    return {k: v.contiguous().clone() for k, v in out.items()}


def to_hf_vitmae_decoder(model: torch.nn.Module) -> dict[str, Tensor]:
    """``ViTMAEForPreTraining`` decoder keys (``decoder.*``)."""
    state = model.state_dict()
    dd = model.config.decoder_dim
    out = {"decoder.decoder_embed.weight": state["decoder_embed.weight"],
           "decoder.decoder_embed.bias": state["decoder_embed.bias"],
           "decoder.mask_token": state["mask_token"],
           "decoder.decoder_pos_embed": _with_cls_row(model.decoder_pos.table.detach()),
           "decoder.decoder_norm.weight": state["decoder_norm.weight"],
           "decoder.decoder_norm.bias": state["decoder_norm.bias"],
           "decoder.decoder_pred.weight": state["decoder_pred.weight"],
           "decoder.decoder_pred.bias": state["decoder_pred.bias"]}
    for i in range(len(model.decoder_blocks)):
        _layer_to_hf(f"decoder_blocks.{i}", f"decoder.decoder_layers.{i}", state, out, dd)
    return {k: v.contiguous().clone() for k, v in out.items()}


# --------------------------------------------------------------------------- import direction
def _layer_from_hf(prefix_in: str, prefix_out: str, state: dict[str, Tensor], out: dict[str, Tensor],
                   used: set[str]) -> None:
    for sub, hf in HF_LAYER.items():
        for kind in ("weight", "bias"):
            key = f"{prefix_in}.{hf}.{kind}"
            if key in state:
                out[f"{prefix_out}.{sub}.{kind}"] = state[key]
                used.add(key)
    for kind in ("weight", "bias"):
        keys = [f"{prefix_in}.attention.attention.{n}.{kind}" for n in ("query", "key", "value")]
        if all(k in state for k in keys):
            out[f"{prefix_out}.attn.qkv.{kind}"] = torch.cat([state[k] for k in keys], dim=0)
            used.update(keys)


def _fold_cls(out: dict[str, Tensor], pos: Tensor, cls_key: str, table_key: str, has_cls: bool) -> None:
    """Split a (1, [1+]N, D) table: the CLS row is added to the CLS token, the rest is the grid table."""
    if has_cls and cls_key in out:
        out[cls_key] = out[cls_key] + pos[:, :1]
        pos = pos[:, 1:]
    out[table_key] = pos


#: decoder names of MAE-style checkpoints in timm layout (encoder as timm, plus these): maskkit's own
MAE_DECODER_PREFIXES = ("decoder_embed.", "decoder_blocks.", "decoder_norm.", "decoder_pred.")


def from_timm(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """timm ViT keys (and the decoder of MAE checkpoints in timm layout) -> maskkit keys; returns
    (converted, unused source keys)."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for key, value in state.items():
        if key.startswith("patch_embed.proj."):
            out["tokenizer.proj." + key.split(".")[-1]] = value
        elif key.startswith(("blocks.", "norm.", *MAE_DECODER_PREFIXES)) or key in ("cls_token", "mask_token"):
            out[key] = value
        elif key == "decoder_pos_embed":  # (1, 1 + N, Dd): the CLS row gets no decoder position in maskkit
            out["decoder_pos.table"] = value[:, 1:] if "cls_token" in state else value
        else:
            continue
        used.add(key)
    if "pos_embed" in state:
        used.add("pos_embed")
        num = state["pos_embed"].shape[1]
        has_cls = "cls_token" in state and num > 1
        _fold_cls(out, state["pos_embed"], "cls_token", "encoder_pos.table", has_cls)
    return out, sorted(set(state) - used)


def strip_prefix(state: dict[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    for prefix in prefixes:
        if any(k.startswith(prefix + "embeddings.") for k in state):
            return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return state


#: transformers >= 5 module names (in-memory state dicts) -> the names its files use (and 4.x)
_HF5_RENAMES = (("attention.q_proj.", "attention.attention.query."), ("attention.k_proj.", "attention.attention.key."),
                ("attention.v_proj.", "attention.attention.value."), ("attention.o_proj.", "attention.output.dense."),
                ("mlp.fc1.", "intermediate.dense."), ("mlp.fc2.", "output.dense."))


def _legacy_hf_name(key: str) -> str:
    if key.startswith("layers."):
        key = "encoder.layer." + key[len("layers."):]
    if key.startswith(("encoder.layer.", "decoder.decoder_layers.")):
        for new, old in _HF5_RENAMES:
            key = key.replace("." + new, "." + old)
    return key


def from_hf(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Hugging Face ViT / ViT-MAE keys (bare, ``vit.``-prefixed, with a ``decoder.*``; file names or
    transformers 5's in-memory names) -> maskkit keys."""
    state = strip_prefix(state, ("vit.", "model."))
    state = {_legacy_hf_name(k): v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    simple = {"embeddings.cls_token": "cls_token",
              "embeddings.patch_embeddings.projection.weight": "tokenizer.proj.weight",
              "embeddings.patch_embeddings.projection.bias": "tokenizer.proj.bias",
              "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
              "decoder.decoder_embed.weight": "decoder_embed.weight",
              "decoder.decoder_embed.bias": "decoder_embed.bias", "decoder.mask_token": "mask_token",
              "decoder.decoder_norm.weight": "decoder_norm.weight", "decoder.decoder_norm.bias": "decoder_norm.bias",
              "decoder.decoder_pred.weight": "decoder_pred.weight", "decoder.decoder_pred.bias": "decoder_pred.bias"}
    for src, dst in simple.items():
        if src in state:
            out[dst] = state[src]
            used.add(src)
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.")}
    for i in sorted(layers):
        _layer_from_hf(f"encoder.layer.{i}", f"blocks.{i}", state, out, used)
    dec_layers = {int(k.split(".")[2]) for k in state if k.startswith("decoder.decoder_layers.")}
    for i in sorted(dec_layers):
        _layer_from_hf(f"decoder.decoder_layers.{i}", f"decoder_blocks.{i}", state, out, used)
    if "embeddings.position_embeddings" in state:
        used.add("embeddings.position_embeddings")
        _fold_cls(out, state["embeddings.position_embeddings"], "cls_token", "encoder_pos.table", True)
    if "decoder.decoder_pos_embed" in state:
        used.add("decoder.decoder_pos_embed")
        pos = state["decoder.decoder_pos_embed"]
        out["decoder_pos.table"] = pos[:, 1:]
        if pos[:, :1].abs().max() > 0:  # a CLS row cannot be folded: maskkit's decoder adds nothing to it
            out["decoder_pos.cls_row"] = pos[:, :1]
    return out, sorted(set(state) - used)
