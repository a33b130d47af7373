"""A straightforward eager MAE, written from the paper's description, as a speed yardstick.

It is what one writes first: manual softmax attention, masking inside the model, one class. Only
the tokenizer is maskkit's (the run's own, so the yardstick serves every modality).
`maskkit bench `reference`` times it beside maskkit's step on the same shapes, so the benchmark
shows that the modular design costs nothing (or what it costs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from maskkit.tokenizer import Tokenizer


class PlainBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


class PlainMAE(nn.Module):
    """Input in, scalar loss out: the run's own tokenizer (so every modality has a yardstick), then
    random masking, a plain encoder and decoder and norm-pix MSE written inline."""

    def __init__(self, tokenizer: Tokenizer, dim: int, depth: int, heads: int, dec_dim: int, dec_depth: int,
                 dec_heads: int, mask_ratio: float) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.mask_ratio = mask_ratio
        n = tokenizer.layout.num_tokens
        self.pos = nn.Parameter(torch.zeros(1, n, dim), requires_grad=False)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(PlainBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.dec_embed = nn.Linear(dim, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.dec_pos = nn.Parameter(torch.zeros(1, n + 1, dec_dim), requires_grad=False)
        self.dec_blocks = nn.ModuleList(PlainBlock(dec_dim, dec_heads) for _ in range(dec_depth))
        self.dec_norm = nn.LayerNorm(dec_dim, eps=1e-6)
        self.head = nn.Linear(dec_dim, tokenizer.target_dim)

    def forward(self, inputs: Tensor) -> Tensor:
        tokens = self.tokenizer.tokenize(inputs)
        target = tokens.targets
        x = tokens.embeddings + self.pos
        b, n = x.shape[:2]
        keep = int(n * (1 - self.mask_ratio))
        shuffle = torch.rand(b, n, device=x.device).argsort(dim=1)
        restore = shuffle.argsort(dim=1)
        x = torch.gather(x, 1, shuffle[:, :keep, None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.dec_embed(self.norm(x))
        full = torch.cat([x[:, 1:], self.mask_token.expand(b, n - keep, -1)], dim=1)
        full = torch.gather(full, 1, restore[:, :, None].expand(-1, -1, full.shape[-1]))
        x = torch.cat([x[:, :1], full], dim=1) + self.dec_pos
        for blk in self.dec_blocks:
            x = blk(x)
        pred = self.head(self.dec_norm(x))[:, 1:]
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
        mask = torch.ones(b, n, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, restore)
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
