"""One clear line and exit code 2 for user errors, instead of a traceback from deep inside torch."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def user_error_types() -> tuple[type[BaseException], ...]:
    """What the user can fix: every ``MaskkitError`` (settings, data, checkpoints). Anything else is a bug
    and keeps its traceback."""
    from maskkit.errors import MaskkitError

    return (MaskkitError,)


_SETTING = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*)`")


def setting_flags() -> dict[str, str]:
    """Setting name -> the flag of the command being run (``mask_ratio`` -> ``--mask-ratio``)."""
    try:
        from typer._click.globals import get_current_context  # typer >= 0.20 bundles its own click
    except ImportError:
        from click import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None:
        return {}
    flags = {}
    for param in ctx.command.params:
        long = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if param.name and long:
            flags[param.name] = max(long, key=len)
    return flags


def cli_words(message: str) -> str:
    """Library messages name settings as `name` (what a Python caller passed); a CLI user reads the flag
    of this command instead, or the bare name where the command has no flag for it."""
    flags = setting_flags()
    for name, flag in list(flags.items()):  # `modality_options` is the setting behind --modality-opt
        if name.endswith("_opt"):
            flags.setdefault(name + "ions", flag)
    return _SETTING.sub(lambda m: flags.get(m.group(1), m.group(1)), message)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {cli_words(message)}", err=True)
    raise typer.Exit(code)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    typer.echo(f"warning: {cli_words(str(message))}", err=True)


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from maskkit.train.trainer import TrainingInterrupted, TrainingStopped

        previous = warnings.showwarning
        warnings.showwarning = _show_warning  # library warnings in the command's own words
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except TrainingInterrupted as exc:
            typer.echo(cli_words(str(exc)), err=True)
            raise typer.Exit(exc.exit_code) from None
        except TrainingStopped as exc:
            fail(str(exc), code=3)
        except user_error_types() as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(message)
        except OSError as exc:  # a write the system refused (read-only, full disk): name the file
            if "MASKKIT_DEBUG" in __import__("os").environ:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        finally:
            warnings.showwarning = previous
        return None

    wrapper.__doc__ = func.__doc__

    return wrapper  # type: ignore[return-value]
