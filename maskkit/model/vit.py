"""Pre-norm transformer block on ``F.scaled_dot_product_attention``.

Attention weights are materialised only when asked for (analysis, attention-guided maskers);
the training path always uses the fused SDPA kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = None
        if return_attention:
            # maps that maskers and the analysis read are fp32 whatever the step's autocast says
            with torch.autocast(device_type=q.device.type, enabled=False):
                scores = (q.float() @ k.float().transpose(-2, -1)) * self.head_dim**-0.5
                attn = scores.softmax(dim=-1)
            out = (attn.to(v.dtype) @ v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.proj(out), attn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: drop a residual branch for whole samples, rescaling the kept ones by 1/(1-p)."""
    if p <= 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype).bernoulli_(1 - p)
    return x * keep / (1 - p)


class Block(nn.Module):
    """x + Attn(LN(x)); x + MLP(LN(x)).

    ``drop_path`` (stochastic depth, a plain attribute so pretraining checkpoints are unchanged) is 0
    for pretraining; fine-tuning sets it per block (``maskkit.lab.finetune.recipe.set_drop_path``).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        x = x + drop_path(self.attn(self.norm1(x))[0], self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out, attn = self.attn(self.norm1(x), return_attention=True)
        x = x + drop_path(out, self.drop_path, self.training)
        assert attn is not None
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training), attn


def run_blocks(blocks: nn.ModuleList, x: Tensor, checkpoint: bool = False) -> Tensor:
    """Run blocks in order; with ``checkpoint`` recompute activations in backward to save memory."""
    for blk in blocks:
        if checkpoint and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
        else:
            x = blk(x)
    return x
