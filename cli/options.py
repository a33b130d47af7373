"""Options shared by several commands (modality shape options, masker options)."""

from __future__ import annotations

from typing import Any

from maskkit.config_utils import parse_key_values


def modality_options(values: dict[str, Any], extra: list[str] | None) -> dict[str, Any]:
    """Given CLI modality options (None = not given) plus ``--modality-opt k=v`` items."""
    out = {k: v for k, v in values.items() if v is not None}
    out.update(parse_key_values(extra, "--modality-opt"))
    return out
