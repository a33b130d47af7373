"""maskkit-timeseries: an external maskkit modality, found through the ``maskkit.modalities`` entry point."""

from .modality import TimeSeriesModality, TimeSeriesOptions

__all__ = ["TimeSeriesModality", "TimeSeriesOptions"]
