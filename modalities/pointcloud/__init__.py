"""Point-cloud modality (``modality="pointcloud"``); its ``point-block`` masker registers through the
``maskkit.maskers`` entry points."""

from .modality import PointCloudConfig, PointCloudModality

__all__ = ["PointCloudModality", "PointCloudConfig"]
