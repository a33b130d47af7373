"""maskkit's errors, at the bottom of the kernel so every layer can raise them.

Every error a user can cause (a bad setting, bad data, a bad checkpoint) is a ``MaskkitError``: the CLI
prints those as one line and exits 2; any other exception is a bug and keeps its traceback. Each class
is also a ``ValueError``, as it was before the hierarchy, so existing ``except ValueError`` still works.
"""

from __future__ import annotations


class MaskkitError(Exception):
    """Something the user can fix; the message names the setting, file or run and what was expected."""


class ConfigError(MaskkitError, ValueError):
    """A configuration value is wrong; the message names the setting in backticks and what was expected."""


class DataError(MaskkitError, ValueError):
    """Bad data: the message names the file or path and what was expected."""


class CheckpointError(MaskkitError, ValueError):
    """A checkpoint is missing, unreadable, foreign or incompatible; the message says which and why."""


class PluginError(MaskkitError, TypeError):
    """A modality, tokenizer or masker class does not fit the plug-in contract; the message names the
    class, the missing member and the name it had before, checked when the class is defined."""


class MaskkitDeprecationWarning(DeprecationWarning):
    """A plug-in uses a renamed member; it still works for one release. Shown by default (``import maskkit``
    adds a filter), because the people who must act are plug-in authors running maskkit, not its tests."""
