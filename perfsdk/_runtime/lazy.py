"""Packages whose public names load on first use (PEP 562).

perfsdk runs inside other people's processes: ``import perfsdk`` should cost
the host next to nothing, and a process that only decorates functions should
not load numpy, pyarrow or the OpenTelemetry SDK. A package lists where each
of its names lives; the first access imports that module, and the name is
then an ordinary module attribute.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping

from perfsdk._runtime.startup import long_lived_startup

__all__ = ["lazy_names"]


def lazy_names(package: str, homes: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``homes`` maps each name to its module.

    A package's ``__init__`` ends with ``__getattr__, __dir__ = lazy_names(__name__, {...})``;
    here a bare module stands in for one:

    >>> import sys, types
    >>> sys.modules["shop"] = types.ModuleType("shop")
    >>> getattr_, dir_ = lazy_names("shop", {"dumps": "json"})
    >>> "dumps" in dir_()
    True
    >>> getattr_("dumps")([1, 2])  # json loads now, on first use
    '[1, 2]'
    >>> sys.modules["shop"].dumps is sys.modules["json"].dumps  # an ordinary attribute from now on
    True
    >>> del sys.modules["shop"]
    """
    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        with long_lived_startup():  # modules live as long as the process (see startup.py)
            value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
