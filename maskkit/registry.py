"""Name -> class registries for modalities and maskers, open to third parties via entry points.

Built-in maskers register on import of ``maskkit.masking``; modalities (built-in and external)
are found through the ``maskkit.modalities`` entry-point group and maskers from other packages
through ``maskkit.maskers``. The core never imports ``maskkit.modalities`` directly.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from maskkit.masking.base import Masker
    from maskkit.modality import Modality

_MASKERS: dict[str, type[Masker]] = {}
_MODALITIES: dict[str, type[Modality]] = {}
_MODALITY_ENTRY_POINTS: dict[str, Any] = {}
_LOADED_ENTRY_POINTS = False
_MODALITY_ERRORS: dict[str, str] = {}

M = TypeVar("M")


class RegistryError(ValueError):
    """Unknown name; the message lists what is known."""


def register_masker(cls: type[M]) -> type[M]:
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    existing = _MASKERS.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"masker name {name!r} is taken by {existing.__module__}.{existing.__qualname__}")
    _MASKERS[name] = cls  # type: ignore[assignment]
    return cls


def register_modality(cls: type[M]) -> type[M]:
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    _MODALITIES[name] = cls  # type: ignore[assignment]
    return cls


def _load_entry_points() -> None:
    global _LOADED_ENTRY_POINTS
    if _LOADED_ENTRY_POINTS:
        return
    _LOADED_ENTRY_POINTS = True
    importlib.import_module("maskkit.masking")
    for ep in entry_points(group="maskkit.modalities"):
        _MODALITY_ENTRY_POINTS.setdefault(ep.name, ep)
    for ep in entry_points(group="maskkit.maskers"):
        try:
            register_masker(ep.load())
        except Exception as exc:  # a broken plug-in must not break maskkit
            _MODALITY_ERRORS[f"masker:{ep.name}"] = f"{type(exc).__name__}: {exc}"


def _load_modality(name: str) -> type[Modality] | None:
    if name in _MODALITIES:
        return _MODALITIES[name]
    ep = _MODALITY_ENTRY_POINTS.get(name)
    if ep is None:
        return None
    try:
        cls = ep.load()
    except Exception as exc:
        _MODALITY_ERRORS[name] = f"{type(exc).__name__}: {exc}"
        return None
    _MODALITIES[name] = cls
    return cls


def modality_names() -> list[str]:
    _load_entry_points()
    return sorted(set(_MODALITIES) | set(_MODALITY_ENTRY_POINTS))


def get_modality(name: str) -> type[Modality]:
    _load_entry_points()
    cls = _load_modality(name)
    if cls is None:
        if name in _MODALITY_ERRORS:
            raise RegistryError(f"modality {name!r} is installed but failed to load: {_MODALITY_ERRORS[name]}")
        raise RegistryError(f"unknown modality {name!r}; known: {', '.join(modality_names()) or 'none'}")
    return cls


def load_all_modalities() -> dict[str, type[Modality]]:
    """Import every installed modality (so their maskers register) and return them by name."""
    _load_entry_points()
    for name in list(_MODALITY_ENTRY_POINTS):
        _load_modality(name)
    return dict(sorted(_MODALITIES.items()))


def masker_names() -> list[str]:
    load_all_modalities()
    return sorted(_MASKERS)


def get_masker(name: str) -> type[Masker]:
    _load_entry_points()
    if name not in _MASKERS:
        load_all_modalities()
    if name not in _MASKERS:
        raise RegistryError(f"unknown masker {name!r}; known: {', '.join(masker_names())}")
    return _MASKERS[name]


def all_maskers() -> dict[str, type[Masker]]:
    load_all_modalities()
    return dict(sorted(_MASKERS.items()))


def load_errors() -> dict[str, str]:
    return dict(_MODALITY_ERRORS)


def build_masker(name: str, options: dict[str, Any] | None = None) -> Masker:
    """Instantiate a masker by name with options from TOML or ``key=value`` strings."""
    from maskkit.config_utils import ConfigError, build_dataclass

    cls = get_masker(name)
    options = dict(options or {})
    if cls.Config is None:
        if options:
            raise ConfigError(f"masker {name!r} takes no options; got {', '.join(options)}")
        return cls()
    config = build_dataclass(cls.Config, options, prefix="masker.")
    return cls(config)
