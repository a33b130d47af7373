"""The `maskkit` command: one typer app; each command lives in its own module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Masked-autoencoder pretraining across modalities, with pluggable maskers.")

COMMAND_MODULES = ["train", "evaluate", "visualize", "listing", "bench", "analyze", "compare", "check", "data",
                   "finetune", "export"]

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"maskkit.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"maskkit.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
