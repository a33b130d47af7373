"""Image modality."""
