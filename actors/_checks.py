"""Argument checks shared by every call that takes a duration, so they agree everywhere."""

from __future__ import annotations

import math
from collections.abc import Callable

from ._errors import InvalidArgumentError

__all__ = ["optional_seconds", "seconds"]

ErrorType = Callable[[str], Exception]


def seconds(
    what: str, value: object, *, error: ErrorType = InvalidArgumentError, zero: bool = False
) -> float:
    """Return ``value`` as seconds: a finite number above 0 (or 0 too, with ``zero``).

    Raises:
        ``error`` (an ``InvalidArgumentError`` by default), naming ``what``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        bound = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise error(f"{what} must be {bound}, not {value!r}")
    return float(value)


def optional_seconds(
    what: str, value: object, *, error: ErrorType = InvalidArgumentError
) -> float | None:
    """``seconds``, where None (no limit) is allowed too."""
    if value is None:
        return None
    try:
        return seconds(what, value, error=error)
    except Exception:
        raise error(f"{what} must be a positive number of seconds or None, not {value!r}") from None
