"""Encoders that leave maskkit (export to timm / Hugging Face / safetensors) and weights that come in
(``init_from``), plus running a trained model at another input size.

Nothing here imports timm or transformers at module level: they are optional extras
(``pip install "maskkit[interop]"``).
"""
