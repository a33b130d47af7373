"""Name -> class registries for modalities and maskers, open to third parties via entry points.

One mechanism for everything: built-in and third-party modalities are found through the
``maskkit.modalities`` entry-point group, maskers through ``maskkit.maskers`` (pyproject.toml lists
every built-in one). Entry points load lazily, on first use of a name. ``register_masker`` /
``register_modality`` add a class programmatically (a notebook, a test) under the same checks.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from maskkit.config_utils import ConfigError, build_dataclass

if TYPE_CHECKING:
    from maskkit.maskers.base import Masker
    from maskkit.modality import Modality

_MASKERS: dict[str, type[Masker]] = {}
_MODALITIES: dict[str, type[Modality]] = {}
_MODALITY_ENTRY_POINTS: dict[str, EntryPoint] = {}
_MASKER_ENTRY_POINTS: dict[str, EntryPoint] = {}
_LOADED_ENTRY_POINTS = False
_LOAD_ERRORS: dict[str, str] = {}

M = TypeVar("M")


class RegistryError(ConfigError):
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
    for ep in entry_points(group="maskkit.modalities"):
        _MODALITY_ENTRY_POINTS.setdefault(ep.name, ep)
    for ep in entry_points(group="maskkit.maskers"):
        _MASKER_ENTRY_POINTS.setdefault(ep.name, ep)


def _load_modality(name: str) -> type[Modality] | None:
    if name in _MODALITIES:
        return _MODALITIES[name]
    ep = _MODALITY_ENTRY_POINTS.get(name)
    if ep is None:
        return None
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plug-in must not break maskkit
        _LOAD_ERRORS[name] = f"{type(exc).__name__}: {exc}"
        return None
    _MODALITIES[name] = cls
    return cls


def _load_masker(name: str) -> type[Masker] | None:
    if name in _MASKERS:
        return _MASKERS[name]
    ep = _MASKER_ENTRY_POINTS.get(name)
    if ep is None:
        return None
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plug-in must not break maskkit
        _LOAD_ERRORS[f"masker:{name}"] = f"{type(exc).__name__}: {exc}"
        return None
    if getattr(cls, "name", None) != name:
        _LOAD_ERRORS[f"masker:{name}"] = f"entry point {name!r} names a class whose name is {cls.name!r}"
        return None
    return register_masker(cls)


def modality_names() -> list[str]:
    _load_entry_points()
    return sorted(set(_MODALITIES) | set(_MODALITY_ENTRY_POINTS))


def get_modality(name: str) -> type[Modality]:
    _load_entry_points()
    cls = _load_modality(name)
    if cls is None:
        if name in _LOAD_ERRORS:
            raise RegistryError(f"modality {name!r} is installed but failed to load: {_LOAD_ERRORS[name]}")
        raise RegistryError(f"unknown modality {name!r}; known: {', '.join(modality_names()) or 'none'}")
    return cls


def load_all_modalities() -> dict[str, type[Modality]]:
    """Import every installed modality and return them by name."""
    _load_entry_points()
    for name in list(_MODALITY_ENTRY_POINTS):
        _load_modality(name)
    return dict(sorted(_MODALITIES.items()))


def masker_names() -> list[str]:
    """Every registered or installed masker name (nothing is imported)."""
    _load_entry_points()
    return sorted(set(_MASKERS) | set(_MASKER_ENTRY_POINTS))


def get_masker(name: str) -> type[Masker]:
    _load_entry_points()
    cls = _load_masker(name)
    if cls is None:
        key = f"masker:{name}"
        if key in _LOAD_ERRORS:
            raise RegistryError(f"masker {name!r} is installed but failed to load: {_LOAD_ERRORS[key]}")
        raise RegistryError(f"unknown masker {name!r}; known: {', '.join(masker_names())}")
    return cls


def all_maskers() -> dict[str, type[Masker]]:
    """Load every masker (``maskkit list``); ones that fail to load are reported by ``load_errors``."""
    _load_entry_points()
    for name in list(_MASKER_ENTRY_POINTS):
        _load_masker(name)
    return dict(sorted(_MASKERS.items()))


def load_errors() -> dict[str, str]:
    return dict(_LOAD_ERRORS)


def build_masker(name: str, options: dict[str, Any] | None = None) -> Masker:
    """Instantiate a masker by name with options from TOML or ``key=value`` strings."""
    cls = get_masker(name)
    options = dict(options or {})
    if cls.Config is None:
        if options:
            raise ConfigError(f"masker {name!r} takes no options; got {', '.join(options)}")
        return cls()
    config = build_dataclass(cls.Config, options, prefix="masker.")
    return cls(config)
