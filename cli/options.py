"""Options shared by several commands (modality shape options, masker options)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from maskkit.config_utils import parse_key_values

#: ``--threads N`` on every command that computes (see maskkit.threads for the default)
Threads = Annotated[int | None, typer.Option(
    help="CPU threads for torch (default: the CPUs this process may use, from affinity and cgroup quota)")]


def apply_threads(threads: int | None) -> int:
    """Set torch's thread count for this command; a bad value is a one-line error."""
    from maskkit.config_utils import ConfigError
    from maskkit.threads import configure_threads

    try:
        return configure_threads(threads)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def modality_options(values: dict[str, Any], extra: list[str] | None) -> dict[str, Any]:
    """Given CLI modality options (None = not given) plus ``--modality-opt k=v`` items."""
    out = {k: v for k, v in values.items() if v is not None}
    out.update(parse_key_values(extra, "--modality-opt"))
    return out
