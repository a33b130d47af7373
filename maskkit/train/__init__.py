"""Training: config, the loop, checkpoints, schedules and distributed helpers."""

from maskkit.train.config import TrainConfig

__all__ = ["TrainConfig"]
