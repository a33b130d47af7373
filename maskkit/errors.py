"""Errors about the user's data, at the bottom of the kernel so every layer can raise them."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data: the message names the file or path and what was expected."""
