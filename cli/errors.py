"""One clear line and exit code 2 for user errors, instead of a traceback from deep inside torch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def user_error_types() -> tuple[type[BaseException], ...]:
    from maskkit.config_utils import ConfigError
    from maskkit.modality import DataError
    from maskkit.registry import RegistryError
    from maskkit.train.checkpoint import CheckpointError

    return (ConfigError, DataError, RegistryError, CheckpointError, FileNotFoundError)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from maskkit.train.trainer import TrainingInterrupted, TrainingStopped

        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except TrainingInterrupted as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(130) from None
        except TrainingStopped as exc:
            fail(str(exc), code=3)
        except user_error_types() as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(message)
        except ValueError as exc:  # validation errors raised by dataclass __post_init__
            if "MASKKIT_DEBUG" in __import__("os").environ:
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(message)
        return None

    wrapper.__doc__ = func.__doc__

    return wrapper  # type: ignore[return-value]
