"""Build a run's parts (modality, data, model, masker, loss) from a TrainConfig.

Shared by train, eval, visualize, bench and studies so every command builds the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from maskkit.config_utils import ConfigError, build_dataclass, dataclass_to_dict
from maskkit.losses import Loss
from maskkit.maskers.base import Masker
from maskkit.modality import DataError, MaskkitDataset, Modality
from maskkit.model.mae import MaskedAutoencoder, ModelConfig, model_preset
from maskkit.registry import build_masker, get_modality
from maskkit.train.config import TrainConfig
from maskkit.train.schedule import default_base_lr


def build_modality(name: str, options: dict[str, Any], data: str | None = None) -> Modality:
    """The modality with its options: ``options`` as given, then what the modality suggests for ``data``
    (``Modality.data_defaults``), then its ``Config`` defaults."""
    cls = get_modality(name)
    options = {**cls.data_defaults(data or cls.default_data, set(options)), **options}
    try:
        opts = build_dataclass(cls.Config, options, prefix="")
    except ConfigError as exc:
        msg = str(exc)
        if msg.startswith("unknown option"):
            key = msg.split("'")[1] if "'" in msg else msg
            valid = msg.split("valid options:")[-1].strip()
            raise ConfigError(f"option `{key}` does not apply to modality {name!r} "
                              f"(its options: {valid})") from None
        raise
    return cls(opts)


def resolve_model_config(config: TrainConfig, modality: Modality) -> ModelConfig:
    preset = config.model or modality.default_model
    try:
        base = model_preset(preset)
    except ValueError as exc:
        raise ConfigError(f"`model`: {exc}") from None
    if not config.model_options:
        return base
    return build_dataclass(ModelConfig, config.model_options, prefix="model.", base=base)


def resolve_mask_ratio(config: TrainConfig, modality: Modality) -> float:
    return config.mask_ratio if config.mask_ratio is not None else modality.default_mask_ratio


@dataclass
class RunParts:
    config: TrainConfig
    modality: Modality
    dataset: MaskkitDataset | None
    model: MaskedAutoencoder
    masker: Masker
    loss: Loss
    mask_ratio: float
    model_config: ModelConfig

    def resolved(self) -> dict[str, Any]:
        """Everything needed to rebuild the model without the data (saved in run dirs/checkpoints)."""
        out = self.config.to_dict()
        out["modality_options"] = self.modality.options_dict()
        out["resolved_model"] = dataclass_to_dict(self.model_config)
        out["mask_ratio"] = self.mask_ratio
        out["model"] = self.config.model or self.modality.default_model
        if out.get("base_lr") is None:
            out["base_lr"] = default_base_lr(out["model"], self.modality.default_base_lr)
        return out


def build_model(modality: Modality, model_config: ModelConfig) -> MaskedAutoencoder:
    tokenizer = modality.build_tokenizer(model_config.embed_dim)
    return MaskedAutoencoder(tokenizer, model_config)


def build_run(config: TrainConfig, with_data: bool = True, train: bool = True,
              on_bad_file: str | None = None) -> RunParts:
    """Data first (it may fix options such as channels), then the model shaped to it."""
    modality = build_modality(config.modality, config.modality_options, config.data)
    dataset = None
    if with_data:
        dataset = build_dataset(modality, config.data, train=train, seed=config.seed,
                                on_bad_file=on_bad_file or config.on_bad_file)
        modality.adapt_to_dataset(dataset)
    model_config = resolve_model_config(config, modality)
    torch.manual_seed(config.seed)  # the initial weights depend on the seed only (random-init baselines)
    model = build_model(modality, model_config)
    masker = build_masker(config.masker, config.masker_options)
    if masker.needs_grid and not model.tokenizer.layout.has_grid:
        raise ConfigError(f"`masker` {config.masker} needs a token grid, but modality "
                          f"{config.modality!r} has unordered tokens")
    masker.check_layout(model.tokenizer.layout)
    masker.bind_model(model.shape)  # learned maskers size their layers from the model
    return RunParts(config=config, modality=modality, dataset=dataset, model=model, masker=masker,
                    loss=modality.build_loss(), mask_ratio=resolve_mask_ratio(config, modality),
                    model_config=model_config)


def build_dataset(modality: Modality, data: str | None, train: bool, seed: int,
                  on_bad_file: str = "error") -> MaskkitDataset:
    """Call the modality's loader (``on_bad_file`` is part of the contract; an older plug-in without it is
    adapted when its class is defined, see ``maskkit.contract.accept_parameter``)."""
    dataset = modality.build_dataset(data, train=train, seed=seed, on_bad_file=on_bad_file)
    if len(dataset) == 0:

        raise DataError(f"`data` {data or modality.default_data}: the dataset is empty")
    return dataset
