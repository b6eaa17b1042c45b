"""Detector: what the live detector bank and ``perfsdk analyze`` need of a detector.

Both built-in detectors satisfy it (the check suite in ``perfsdk.checks``
runs over every one); a detector of your own that does can watch spans too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Detector"]


@runtime_checkable
class Detector(Protocol):
    """A streaming detector: scores each point against what came before, then learns it."""

    name: str
    threshold: float  # |score| above it flags a point
    #: True if ``update`` runs start to finish in compiled code, never calling back into
    #: Python: it is then atomic under the GIL, and the bank shares it between threads lock-free.
    atomic_update: bool

    @property
    def n_seen(self) -> int:
        """Points offered so far, valid or not (the index of the next one)."""

    @property
    def details(self) -> Mapping[str, Any]:
        """What an anomaly's explanation says about the model (its parameters, coefficients)."""

    def update(self, x: float) -> float:
        """Score ``x`` (NaN: rejected, or not scorable yet -- an alert score is 0.0 then), then learn it."""

    def update_many(self, xs: Iterable[float] | np.ndarray, details: bool = False) -> Any:
        """``update`` over a batch; with ``details``, ``(scores, expected, std)``."""

    def explain_point(self, value: float, score: float) -> tuple[int, float, float]:
        """``(index, expected, std)`` of the point just scored ``score`` for ``value``:
        what it was compared with, even if another thread has updated the detector since
        (for a detector with ``atomic_update``)."""
