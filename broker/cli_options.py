"""Options several `broker` commands share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_CONFIG_HELP = "The broker's YAML config (default: built-in defaults)."


def config_option(text: str = DEFAULT_CONFIG_HELP) -> Callable[[F], F]:
    """``--config`` (or ``BROKER_CONFIG``): the broker's settings file, as ``config_path``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="BROKER_CONFIG",
        show_envvar=True,
        help=text,
    )


def directory_option(flag: str, name: str, default: Path) -> Callable[[F], F]:
    """A directory option (a file there is refused), passed as ``name``."""
    return click.option(
        flag,
        name,
        type=click.Path(path_type=Path, file_okay=False),
        default=default,
        show_default=True,
    )


@dataclass(frozen=True)
class Finished:
    """What a command returns when all it did is stored and only its output is buffered:
    as the `broker` process (not called in-process), it exits without tearing the
    interpreter down (a tenth of a second of CPU with boto3, SQLAlchemy and pydantic
    loaded; `broker revoke` runs during an incident)."""

    exit_code: int = 0
