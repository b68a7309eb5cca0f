"""Argument checks shared by the library's entry points.

One rule for every scalar option: booleans are not numbers, strings are not parsed, and
the message names the argument (in backquotes), what was received and what to pass.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

__all__ = ["as_float", "as_index", "choice", "integer", "real_number"]


def real_number(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """``value`` as a finite float: an int, float or NumPy real scalar, not a bool or string.

    Raises ``TypeError`` for other kinds and ``ValueError`` for non-finite values (or, with
    ``positive`` / ``nonnegative``, for values ``<= 0`` / ``< 0``).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        msg = f"`{name}` must be a real number (not a bool or a string); got {value!r} of type {type(value).__name__}."
        raise TypeError(msg)
    v = float(value)
    if not math.isfinite(v):
        msg = f"`{name}` must be finite; got {v}."
        raise ValueError(msg)
    if positive and v <= 0:
        msg = f"`{name}` must be positive; got {v}."
        raise ValueError(msg)
    if nonnegative and v < 0:
        msg = f"`{name}` must be non-negative; got {v}."
        raise ValueError(msg)
    return v


def choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of the strings ``choices``: ``TypeError`` for a non-string,
    ``ValueError`` for another string."""
    if not isinstance(value, str):
        msg = f"`{name}` must be one of {choices} (a string); got {value!r} of type {type(value).__name__}."
        raise TypeError(msg)
    if value not in choices:
        msg = f"`{name}` must be one of {choices}; got {value!r}."
        raise ValueError(msg)
    return value


def integer(value: Any, name: str, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an int (anything with ``__index__``, not a bool, not a float), at least
    ``minimum``; ``None`` passes where ``allow_none``."""
    if value is None and allow_none:
        return None
    index = as_index(value)
    if index is None:
        none = " or None" if allow_none else ""
        msg = f"`{name}` must be an integer{none} (not a bool); got {value!r} of type {type(value).__name__}."
        raise TypeError(msg)
    if minimum is not None and index < minimum:
        msg = f"`{name}` must be at least {minimum}; got {index}."
        raise ValueError(msg)
    return index


def as_index(value: Any) -> int | None:
    """``value`` as a Python int if it is integer-like (has ``__index__``: an int, a NumPy
    integer) and not a bool (Python or NumPy), else ``None``.

    The one rule for what counts as an integer; the callers word their own errors.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def as_float(value: Any) -> float | None:
    """``float(value)``, or ``None`` where ``value`` has no real value (``float`` raises
    ``TypeError`` or ``ValueError``).

    No rule on booleans or strings here; the callers add theirs and word their own errors.
    """
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
