"""`maskkit list`: installed modalities, maskers (with references and options) and model presets."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    app.command("list")(list_components)


def resolved_defaults(cls: type) -> dict:
    """Defaults after presets are applied (self-guided leaves options unset until its preset fills them)."""
    try:
        return dict(cls().describe_config())
    except Exception:  # a masker that cannot be built without a model still lists its raw defaults
        return {}


def list_components(
    modalities: Annotated[bool, typer.Option("--modalities", help="Only modalities")] = False,
    maskers: Annotated[bool, typer.Option("--maskers", help="Only maskers")] = False,
    models: Annotated[bool, typer.Option("--models", help="Only model presets")] = False,
    options: Annotated[bool, typer.Option("--options", help="Show every masker option and default")] = False,
) -> None:
    """Show what is installed: modalities, maskers and model presets."""
    from maskkit.config_utils import fields_help
    from maskkit.model.mae import MODEL_PRESETS
    from maskkit.registry import all_maskers, load_all_modalities, load_errors

    show_all = not (modalities or maskers or models)
    console = Console(width=160)
    if show_all or modalities:
        t = Table(title="Modalities")
        for col in ("name", "description", "default data", "mask ratio", "embedded datasets"):
            t.add_column(col)
        for name, cls in load_all_modalities().items():
            t.add_row(name, cls.description, cls.default_data, f"{cls.default_mask_ratio:g}",
                      ", ".join(f"builtin:{k}" for k in cls.builtin_datasets))
        console.print(t)
        for name, err in load_errors().items():
            console.print(f"[yellow]could not load {name}:[/] {err}")
    if show_all or maskers:
        t = Table(title="Maskers")
        for col in ("name", "description", "needs", "reference"):
            t.add_column(col)
        for name, cls in all_maskers().items():
            needs = ", ".join(n for n, flag in (("grid", cls.needs_grid), ("model", cls.needs_model)) if flag)
            t.add_row(name, cls.description, needs or "-", cls.reference)
        console.print(t)
        if options:
            for name, cls in all_maskers().items():
                if cls.Config is None:
                    continue
                t = Table(title=f"options of {name} (--masker-opt key=value)")
                for col in ("option", "type", "default"):
                    t.add_column(col)
                resolved = resolved_defaults(cls)
                for option, kind, default in fields_help(cls.Config):
                    key = option.replace("-", "_")
                    if default == "None" and resolved.get(key) is not None:
                        default = f"{resolved[key]!r} (from the preset)"
                    t.add_row(option, kind, default)
                console.print(t)
    if show_all or models:
        t = Table(title="Model presets")
        for col in ("name", "encoder", "decoder"):
            t.add_column(col)
        for name, c in MODEL_PRESETS.items():
            t.add_row(name, f"{c.embed_dim}-d × {c.depth} blocks, {c.num_heads} heads",
                      f"{c.decoder_dim}-d × {c.decoder_depth} blocks, {c.decoder_heads} heads")
        console.print(t)
