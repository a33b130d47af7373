"""Moved to ``maskkit.model.keys`` (the trainer reads outside weights below the interop layer); this
module keeps the old import path working."""

from maskkit.model.keys import (
    HF_LAYER,
    MAE_DECODER_PREFIXES,
    encoder_state,
    from_hf,
    from_timm,
    strip_prefix,
    to_hf_vit,
    to_hf_vitmae_decoder,
    to_timm,
)

__all__ = ["HF_LAYER", "MAE_DECODER_PREFIXES", "encoder_state", "from_hf", "from_timm", "strip_prefix",
           "to_hf_vit", "to_hf_vitmae_decoder", "to_timm"]
