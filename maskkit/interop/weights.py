"""Moved to ``maskkit.model.weights`` (the trainer reads outside weights below the interop layer); this
module keeps the old import path working."""

from maskkit.model.weights import (
    WEIGHT_FILES,
    ExternalWeights,
    InitReport,
    describe_hints,
    init_model_options,
    load_into,
    read_weights,
)

__all__ = ["WEIGHT_FILES", "ExternalWeights", "InitReport", "describe_hints", "init_model_options", "load_into",
           "read_weights"]
