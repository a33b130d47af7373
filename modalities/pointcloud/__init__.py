"""Point-cloud modality (``--modality pointcloud``); importing it registers the point-block masker."""

from . import maskers  # noqa: F401 - registers "point-block"
from .modality import PointCloudModality, PointCloudOptions

__all__ = ["PointCloudModality", "PointCloudOptions"]
