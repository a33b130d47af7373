"""Built-in modalities, installed as ``maskkit.modalities``. Each registers via an entry point."""
