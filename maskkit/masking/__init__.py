"""Maskers: modality-neutral ones live here; grid-specific ones live with their modality."""

from maskkit.masking import attention as _attention  # noqa: F401  (registers)
from maskkit.masking import block as _block  # noqa: F401  (registers)
from maskkit.masking import compose as _compose  # noqa: F401  (registers)
from maskkit.masking import hard_patches as _hard_patches  # noqa: F401  (registers)
from maskkit.masking import learned as _learned  # noqa: F401  (registers)
from maskkit.masking import noise as _noise  # noqa: F401  (registers)
from maskkit.masking import random as _random  # noqa: F401  (registers)
from maskkit.masking import self_guided as _sg  # noqa: F401  (registers)
from maskkit.masking.base import MaskContext, Masker, MaskPlan, TrainingProgress, num_visible

__all__ = ["MaskContext", "MaskPlan", "Masker", "TrainingProgress", "num_visible"]
