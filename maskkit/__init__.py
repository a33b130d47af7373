"""maskkit: masked-autoencoder pretraining across modalities, with pluggable (self-guided) maskers.

The front door::

    import maskkit
    result = maskkit.train(modality="image", epochs=5, out="runs/demo")
    model, modality, config = maskkit.load("runs/demo")
    rows = maskkit.evaluate("runs/demo")
    maskkit.finetune(run="runs/demo", out="runs/demo-ft", epochs=3)
    maskkit.export("runs/demo", "onnx", "exports/demo")
    maskkit.compare(maskers=["random", "block"], seeds=2, out="studies/demo")

Names load on first use (module ``__getattr__``), so ``import maskkit`` does not import torch: the CLI
imports this package before it knows whether a command needs torch. Everything here is the supported
API (docs/api.md); deeper import paths may move.

``maskkit.train`` is both the subpackage ``maskkit.train`` (config, loop, checkpoints) and a function:
the subpackage is made callable, so ``maskkit.train(...)`` and ``maskkit.train.config`` both work.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from typing import Any

from maskkit.errors import MaskkitDeprecationWarning

# plug-in authors run maskkit, not its tests: show renamed-member warnings by default, once per place
warnings.filterwarnings("default", category=MaskkitDeprecationWarning)

__version__ = "0.2.0"  # the single source (pyproject reads it); see CHANGELOG.md

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "load": "maskkit.api", "evaluate": "maskkit.api", "finetune": "maskkit.api", "export": "maskkit.api",
    "compare": "maskkit.api", "LoadedRun": "maskkit.api",
    "TrainConfig": "maskkit.train.config", "RunResult": "maskkit.train.trainer", "Callback": "maskkit.train.callbacks",
    "FinetuneConfig": "maskkit.lab.finetune", "FinetuneResult": "maskkit.lab.finetune",
    "StudyConfig": "maskkit.lab.study", "StudyOutcome": "maskkit.lab.study", "ProbeResult": "maskkit.lab.evaluate",
    "ModelConfig": "maskkit.model.mae", "MaskedAutoencoder": "maskkit.model.mae",
    "Masker": "maskkit.maskers.base", "MaskPlan": "maskkit.maskers.base", "MaskContext": "maskkit.maskers.base",
    "Modality": "maskkit.modality", "MaskkitDataset": "maskkit.modality", "Tokenizer": "maskkit.tokenizer",
    "register_masker": "maskkit.registry", "register_modality": "maskkit.registry", "build_masker": "maskkit.registry",
    # building blocks for a modality of your own: a 2-D patch grid and its pictures
    "ImagePatchTokenizer": "maskkit.modalities.image.tokenizer", "render_image_batch": "maskkit.modalities.image.draw",
    "MaskkitError": "maskkit.errors", "ConfigError": "maskkit.errors", "DataError": "maskkit.errors",
    "CheckpointError": "maskkit.errors", "PluginError": "maskkit.errors",
}

__all__ = ["__version__", "train", *_EXPORTS]


class _CallableTrain(types.ModuleType):
    """The ``maskkit.train`` subpackage, callable as the front door's ``train`` function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("maskkit.api").train(*args, **kwargs)


class _Package(types.ModuleType):
    """Makes the ``train`` subpackage callable whenever the import system binds it here."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType) and not isinstance(value, _CallableTrain):
            value.__class__ = _CallableTrain
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name == "train":
        return importlib.import_module("maskkit.train")  # binding it here makes it callable (see _Package)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maskkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
