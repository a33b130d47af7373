"""End-to-end fine-tuning and SGD linear probing of a pretrained encoder (MAE's fine-tuning recipe)."""

from maskkit.lab.finetune.config import FinetuneConfig
from maskkit.lab.finetune.trainer import FinetuneResult, run_finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "run_finetune"]
