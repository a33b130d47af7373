"""maskkit package."""
