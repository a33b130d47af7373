"""The model sizes a masker may shape itself from, before training starts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """The sizes a masker may need before training starts (to shape its own layers)."""

    depth: int  # encoder blocks
    embed_dim: int  # encoder width
    num_prefix: int = 0  # tokens before the patch tokens (1 with a CLS token)
    decoder_depth: int = 0  # decoder blocks

    @property
    def middle_layer(self) -> int:
        """The block in the middle of the encoder (0-based)."""
        return max(0, self.depth // 2 - 1)

    @property
    def decoder_middle_layer(self) -> int:
        """The block in the middle of the decoder (0-based)."""
        return max(0, self.decoder_depth // 2 - 1)
