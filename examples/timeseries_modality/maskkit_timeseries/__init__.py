"""maskkit-timeseries: an external maskkit modality, found through the ``maskkit.modalities`` entry point."""

from .modality import TimeSeriesConfig, TimeSeriesModality

__all__ = ["TimeSeriesModality", "TimeSeriesConfig"]
