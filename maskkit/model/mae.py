"""Asymmetric masked autoencoder: the encoder sees visible tokens only, a light decoder fills in.

The tokenizer (a modality's front end) is a submodule, so one state dict holds the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from maskkit.errors import ConfigError
from maskkit.model.shape import ModelShape
from maskkit.model.vit import Block, run_blocks
from maskkit.plan import MaskPlan
from maskkit.positions import FixedGridPositionEmbedding, LearnedGridPositionEmbedding
from maskkit.tokenizer import Tokenizer
from maskkit.tokens import TokenBatch


@dataclass(frozen=True)
class ModelConfig:
    """Encoder/decoder widths and depths. Presets follow ViT naming (base = ViT-B + MAE decoder)."""

    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    decoder_dim: int = 128
    decoder_depth: int = 4
    decoder_heads: int = 4
    mlp_ratio: float = 4.0
    use_cls_token: bool = True
    grad_checkpoint: bool = False
    #: "sincos": fixed tables recomputed from the grid (MAE); "learned": trainable tables (what a
    #: timm / Hugging Face ViT brings, see ``--init-from``), saved in checkpoints
    pos_embed: Literal["sincos", "learned"] = "sincos"

    def __post_init__(self) -> None:
        for name in ("embed_dim", "depth", "num_heads", "decoder_dim", "decoder_depth", "decoder_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"`embed_dim` {self.embed_dim} must be divisible by `num_heads` {self.num_heads}")
        if self.pos_embed not in ("sincos", "learned"):
            raise ConfigError(f"`pos_embed` must be sincos or learned, got {self.pos_embed!r}")
        if self.decoder_dim % self.decoder_heads:
            raise ConfigError(
                f"`decoder_dim` {self.decoder_dim} must be divisible by `decoder_heads` {self.decoder_heads}")


MODEL_PRESETS: dict[str, ModelConfig] = {
    # CPU-sized models for tests and laptop runs
    "nano": ModelConfig(embed_dim=64, depth=4, num_heads=4, decoder_dim=64, decoder_depth=2, decoder_heads=4),
    "micro": ModelConfig(embed_dim=128, depth=6, num_heads=4, decoder_dim=96, decoder_depth=2, decoder_heads=4),
    # ViT-Ti/S/B/L/H encoders; base/large/huge carry the MAE 512-d x 8-block decoder
    "tiny": ModelConfig(embed_dim=192, depth=12, num_heads=3, decoder_dim=128, decoder_depth=4, decoder_heads=4),
    "small": ModelConfig(embed_dim=384, depth=12, num_heads=6, decoder_dim=256, decoder_depth=4, decoder_heads=8),
    "base": ModelConfig(embed_dim=768, depth=12, num_heads=12, decoder_dim=512, decoder_depth=8, decoder_heads=16),
    "large": ModelConfig(embed_dim=1024, depth=24, num_heads=16, decoder_dim=512, decoder_depth=8,
                         decoder_heads=16),
    "huge": ModelConfig(embed_dim=1280, depth=32, num_heads=16, decoder_dim=512, decoder_depth=8,
                        decoder_heads=16),
}


def model_preset(name: str, **overrides: object) -> ModelConfig:
    if name not in MODEL_PRESETS:
        raise ConfigError(f"unknown `model` preset {name!r}; choose from {', '.join(MODEL_PRESETS)}")
    return replace(MODEL_PRESETS[name], **overrides)  # type: ignore[arg-type]


def _position_embedding(tokenizer: Tokenizer, dim: int, kind: str) -> nn.Module:
    """The tokenizer's embedding; for ``learned``, a trainable table started from the grid's sin-cos."""
    module = tokenizer.build_position_embedding(dim)
    if kind == "sincos":
        return module
    if not isinstance(module, FixedGridPositionEmbedding) or tokenizer.layout.grid is None:
        raise ValueError(f"pos_embed=learned needs a token grid; {type(tokenizer).__name__} has "
                         f"{type(module).__name__}")
    return LearnedGridPositionEmbedding(tokenizer.layout.grid, module.table)


@dataclass
class MAEOutput:
    pred: Tensor  # (B, N, P) predictions for every token, in the loss's target space
    latent: Tensor  # (B, [1+] n_keep, D) encoder output (normed)
    decoder_hidden: Tensor  # (B, N, Dd) last decoder states before the head (token order restored)
    decoder_attention: list[Tensor] | None = None  # per decoder layer (B, H, L, L) when asked


class MaskedAutoencoder(nn.Module):
    def __init__(self, tokenizer: Tokenizer, config: ModelConfig) -> None:
        super().__init__()
        if tokenizer.embed_dim != config.embed_dim:
            raise ValueError(f"tokenizer width {tokenizer.embed_dim} != encoder width {config.embed_dim}")
        self.config = config
        self.tokenizer = tokenizer
        d, dd = config.embed_dim, config.decoder_dim
        self.num_prefix = 1 if config.use_cls_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if config.use_cls_token else None
        self.encoder_pos = _position_embedding(tokenizer, d, config.pos_embed)
        self.blocks = nn.ModuleList(Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos = _position_embedding(tokenizer, dd, config.pos_embed)
        self.decoder_blocks = nn.ModuleList(
            Block(dd, config.decoder_heads, config.mlp_ratio) for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(dd, eps=1e-6)
        self.decoder_pred = nn.Linear(dd, tokenizer.target_dim)
        self._init_weights()

    # ----------------------------------------------------------------- init
    def _init_weights(self) -> None:
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for name, module in self.named_modules():
            if name.startswith("tokenizer"):
                continue  # the tokenizer initialises itself
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def shape(self) -> ModelShape:
        """The sizes maskers may shape themselves from (``Masker.bind_model``)."""
        return ModelShape(depth=self.depth, embed_dim=self.config.embed_dim, num_prefix=self.num_prefix,
                          decoder_depth=len(self.decoder_blocks))

    # ----------------------------------------------------------------- pieces
    def tokenize(self, x: Tensor) -> TokenBatch:
        return self.tokenizer.tokenize(x)

    def _with_positions(self, tokens: TokenBatch) -> Tensor:
        """Embeddings plus positions, added in fp32: the residual stream stays fp32 under autocast
        (blocks cast to bf16 inside their matmuls), so positions never round to bf16 here."""
        return tokens.embeddings.float() + self.encoder_pos(tokens.positions).float()

    def _prepend_cls(self, x: Tensor) -> Tensor:
        if self.cls_token is None:
            return x
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)

    def forward_encoder(self, tokens: TokenBatch, plan: MaskPlan) -> Tensor:
        x = self._with_positions(tokens)
        idx = plan.ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        x = torch.gather(x, 1, idx)
        x = self._prepend_cls(x)
        x = run_blocks(self.blocks, x, checkpoint=self.config.grad_checkpoint)
        return self.norm(x)

    def _decoder_input(self, latent: Tensor, tokens: TokenBatch, plan: MaskPlan) -> Tensor:
        """Visible latents and mask tokens in token order, with decoder positions and the prefix; an
        fp32 residual stream (see _with_positions)."""
        x = self.decoder_embed(latent).float()
        prefix, visible = x[:, : self.num_prefix], x[:, self.num_prefix:]
        b, n = plan.mask.shape
        masks = self.mask_token.to(x.dtype).expand(b, n - visible.shape[1], -1)
        full = torch.cat([visible, masks], dim=1)
        full = torch.gather(full, 1, plan.ids_restore.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
        full = full + self.decoder_pos(tokens.positions).float()
        return torch.cat([prefix, full], dim=1)

    def forward_decoder(self, latent: Tensor, tokens: TokenBatch, plan: MaskPlan,
                        return_attention: bool = False) -> MAEOutput:
        x = self._decoder_input(latent, tokens, plan)
        attentions: list[Tensor] | None = None
        if return_attention:
            attentions = []
            for blk in self.decoder_blocks:
                x, attn = blk.forward_with_attention(x)
                attentions.append(attn)
        else:
            x = run_blocks(self.decoder_blocks, x, checkpoint=self.config.grad_checkpoint)
        hidden = self.decoder_norm(x)[:, self.num_prefix:]
        return MAEOutput(pred=self.decoder_pred(hidden), latent=latent, decoder_hidden=hidden,
                         decoder_attention=attentions)

    def forward(self, tokens: TokenBatch, plan: MaskPlan, return_attention: bool = False) -> MAEOutput:
        latent = self.forward_encoder(tokens, plan)
        return self.forward_decoder(latent, tokens, plan, return_attention=return_attention)

    # ----------------------------------------------------------------- evaluation / analysis
    def encode(self, x: Tensor) -> Tensor:
        """All tokens through the encoder (no masking): (B, prefix + N, D), final norm applied."""
        tokens = self.tokenize(x)
        h = self._prefix_and_positions(tokens)
        h = run_blocks(self.blocks, h)
        return self.norm(h)

    def _prefix_and_positions(self, tokens: TokenBatch) -> Tensor:
        return self._prepend_cls(self._with_positions(tokens))

    @torch.no_grad()
    def token_features(self, tokens: TokenBatch, layer: int, normed: bool = True) -> Tensor:
        """(B, N, D) features of every token after encoder block ``layer`` (0-based; -1 = last).

        Runs only blocks 0..layer, so the cost grows with the layer, not the depth. The final
        LayerNorm is applied when ``normed`` (the last-layer features then equal ``encode``'s).
        """
        layer = self.resolve_layer(layer)
        h = self._prefix_and_positions(TokenBatch(
            embeddings=tokens.embeddings.detach(), targets=tokens.targets, positions=tokens.positions,
            layout=tokens.layout, context=tokens.context))
        for blk in self.blocks[: layer + 1]:
            h = blk(h)
        if normed:
            h = self.norm(h)
        return h[:, self.num_prefix:]

    @torch.no_grad()
    def decoder_token_features(self, tokens: TokenBatch, layer: int, normed: bool = True) -> Tensor:
        """(B, N, Dd) decoder states of every token after decoder block ``layer`` (0-based; -1 = last),
        for the full input: all tokens are encoded (none masked) and decoded, with no mask token, a
        regime the decoder never trains in (the paper reads the decoder of the masked training
        pass; see docs/self-guided.md). It costs a full encoder pass plus ``layer + 1`` decoder blocks."""
        depth = len(self.decoder_blocks)
        resolved = layer if layer >= 0 else depth + layer
        if not 0 <= resolved < depth:
            raise ValueError(f"decoder layer {layer} does not exist (the decoder has {depth} blocks)")
        h = self._prefix_and_positions(TokenBatch(
            embeddings=tokens.embeddings.detach(), targets=tokens.targets, positions=tokens.positions,
            layout=tokens.layout, context=tokens.context))
        x = self.decoder_embed(self.norm(run_blocks(self.blocks, h)))
        prefix, body = x[:, : self.num_prefix], x[:, self.num_prefix:]
        x = torch.cat([prefix, body + self.decoder_pos(tokens.positions).to(body.dtype)], dim=1)
        for blk in self.decoder_blocks[: resolved + 1]:
            x = blk(x)
        if normed:
            x = self.decoder_norm(x)
        return x[:, self.num_prefix:]

    @torch.no_grad()
    def encoder_attention(self, tokens: TokenBatch, layers: list[int] | None = None) -> dict[int, Tensor]:
        """Head attention maps (B, H, prefix+N, prefix+N) of the full input at the requested layers."""
        wanted = {self.resolve_layer(i) for i in (layers if layers is not None else range(self.depth))}
        h = self._prefix_and_positions(TokenBatch(
            embeddings=tokens.embeddings.detach(), targets=tokens.targets, positions=tokens.positions,
            layout=tokens.layout, context=tokens.context))
        out: dict[int, Tensor] = {}
        for i, blk in enumerate(self.blocks):
            if i > max(wanted):
                break
            if i in wanted:
                h, attn = blk.forward_with_attention(h)
                out[i] = attn
            else:
                h = blk(h)
        return out

    def resolve_layer(self, layer: int) -> int:
        resolved = layer if layer >= 0 else self.depth + layer
        if not 0 <= resolved < self.depth:
            raise ValueError(f"encoder layer {layer} does not exist (the encoder has {self.depth} blocks)")
        return resolved
