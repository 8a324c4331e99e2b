"""Settings read from the environment (each documented where it is used)."""

from __future__ import annotations

import os


def env_number(name: str, default: float, minimum: float = 0.0) -> float:
    """The number the environment variable `name` holds (`default` where unset or empty); a
    value that is not a number, or is below `minimum`, raises a `ValueError` naming it."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None
    if number < minimum:
        raise ValueError(f"{name}={value!r} is below {minimum:g}")
    return number
