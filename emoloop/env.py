"""Small typed readers for settings taken from the environment.

Each refuses a malformed value with a message naming the variable, so a typo in a
deployment fails at start-up rather than as odd behaviour later.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ImproperSetting(ValueError):
    """An environment variable holds a value the settings cannot use."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperSetting(f"{name} must be one of true/false/1/0/yes/no/on/off, got {raw!r}")


def _env_number(name: str, default: T, parse: Callable[[str], T], minimum: float | None) -> T:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw.strip())
    except ValueError as exc:
        raise ImproperSetting(f"{name} must be a number, got {raw!r}") from exc
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise ImproperSetting(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    return _env_number(name, default, int, minimum)


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    return _env_number(name, default, float, minimum)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]
