"""Argument validation for the public API, in one place.

A wrong *type* raises ``TypeError``, a wrong *value* ``ValueError``; both name
the argument and show what was given. ``bool`` is never accepted as a number.

>>> check_int("window", 8, minimum=2)
8
>>> check_int("window", "8", minimum=2)
Traceback (most recent call last):
TypeError: window must be an integer, got '8'
>>> check_number("threshold", -1.0, low=0.0, low_open=True)
Traceback (most recent call last):
ValueError: threshold must be a finite number > 0, got -1.0
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Collection

__all__ = ["check_bool", "check_callable", "check_choice", "check_int", "check_number", "check_str"]


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (numpy's too) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {_range(minimum, maximum, False, False)}, got {value!r}")
    return value


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """A real number (not bool, not NaN; finite unless ``finite=False``) within the bounds.

    A number too large for a float (``10**400``) counts as +-inf, so it gets the ValueError
    an infinity gets, not an OverflowError.

    >>> check_number("threshold", 10**400)
    Traceback (most recent call last):
    ValueError: threshold must be a finite number, got a number too large for a float
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    shown = None
    try:
        v = float(value)
    except OverflowError:  # its hundreds of digits would swamp the message
        v, shown = (-math.inf if value < 0 else math.inf), "a number too large for a float"
    bad = math.isnan(v) or (finite and math.isinf(v))
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        kind = "a finite number" if finite else "a number"
        raise ValueError(f"{name} must be {kind} {_range(low, high, low_open, high_open)}".rstrip()
                         + f", got {shown or repr(value)}")
    return v


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    return value


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")
    return value


def _range(low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""
