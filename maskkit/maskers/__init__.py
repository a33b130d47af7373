"""Maskers: modality-neutral ones live here; grid-specific ones live with their modality.

Importing this package registers nothing: every masker, built-in or third-party, is found through
the ``maskkit.maskers`` entry-point group (see ``maskkit.registry``).
"""

from maskkit.maskers.base import MaskContext, Masker, MaskPlan, ModelShape, ModelView, TrainingProgress, num_visible

__all__ = ["MaskContext", "MaskPlan", "Masker", "ModelShape", "ModelView", "TrainingProgress", "num_visible"]
