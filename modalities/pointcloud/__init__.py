"""Point-cloud modality (``--modality pointcloud``); its ``point-block`` masker registers through the
``maskkit.maskers`` entry points."""

from .modality import PointCloudModality, PointCloudOptions

__all__ = ["PointCloudModality", "PointCloudOptions"]
