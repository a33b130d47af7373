"""Checks that keep the plug-in contract (``Modality``, ``Tokenizer``) usable across renames.

The base classes call these from ``__init_subclass__``, so a plug-in that does not fit is refused when
its class is defined (its entry point is loaded), with one line naming the class, the missing member and
its old name, instead of a ``TypeError`` from deep inside model building. A member defined under its old
name keeps working for one release, with a ``MaskkitDeprecationWarning`` naming the new name.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

from maskkit.errors import MaskkitDeprecationWarning, PluginError

#: the release whose renames the aliases bridge; they go in the release after it (see CHANGELOG.md)
RENAMED_IN = "0.2.0"


def adopt_renamed(cls: type, renames: dict[str, str]) -> None:
    """For each ``old -> new`` member that ``cls`` defines under its old name only, serve it under the new
    name too and warn (pointing at the plug-in's class statement)."""
    for old, new in renames.items():
        if old in cls.__dict__ and new not in cls.__dict__:
            warn_renamed(cls, old, new, stacklevel=4)
            setattr(cls, new, cls.__dict__[old])


def warn_renamed(cls: type, old: str, new: str, stacklevel: int = 3) -> None:
    """A renamed member was used under its old name (at the caller's caller)."""
    warnings.warn(f"{cls.__qualname__}.{old} was renamed `{new}` in maskkit {RENAMED_IN}; "
                  f"the old name works until the next release", MaskkitDeprecationWarning, stacklevel=stacklevel)


def accept_parameter(cls: type, method: str, parameter: str, default: Any) -> None:
    """A plug-in whose ``method`` predates ``parameter`` keeps working: it is wrapped to accept the
    parameter (and ignore it, as it always did), with a ``MaskkitDeprecationWarning`` saying to add it."""
    own = cls.__dict__.get(method)
    if own is None or not callable(own):
        return
    params = inspect.signature(own).parameters
    if parameter in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    warnings.warn(f"{cls.__qualname__}.{method} has no `{parameter}` parameter, part of the contract since "
                  f"maskkit {RENAMED_IN}; it is ignored until you add it", MaskkitDeprecationWarning, stacklevel=3)

    @functools.wraps(own)
    def accepting(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop(parameter, default)
        return own(self, *args, **kwargs)

    setattr(cls, method, accepting)


def require_members(cls: type, base: type, members: dict[str, str | None],
                    fits: dict[str, Callable[[object], bool]] | None = None) -> None:
    """Refuse ``cls`` if a member in ``members`` (name -> its old name, or None) is still the base's
    (not implemented) or fails its ``fits`` check."""
    for name, old in members.items():
        value = getattr(cls, name, None)
        inherited = value is getattr(base, name, None)
        if inherited or (fits is not None and name in fits and not fits[name](value)):
            was = f" (before maskkit {RENAMED_IN} it was called `{old}`)" if old else ""
            raise PluginError(f"{cls.__module__}.{cls.__qualname__} does not fit the {base.__name__} contract: "
                              f"it has no `{name}`{was}")
