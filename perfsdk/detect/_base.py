"""Behaviour shared by every streaming detector whose state is one float64 array.

A concrete detector combines this mixin with a Cython core that provides the
per-event verbs (``update``, ``_score_one``, ``_learn_one``, ``last_expected``,
``last_std``) and names a Numba batch kernel. Everything else -- batch
updates, anomaly records, snapshots, pickling, cloning, repr -- lives here
once. What the per-event path calls reads the state through ``slots`` (a
memoryview); numpy loads with the first batch, snapshot or restore.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from perfsdk._native import kernels
from perfsdk.detect.anomaly import Anomaly

if TYPE_CHECKING:
    import numpy as np

    from perfsdk._native import Slots

__all__ = ["MAX_POINTS", "StreamingDetector", "as_point", "as_scalar", "check_slots"]

#: The longest window, season or history a detector keeps: 10**7 points, 80 MB of doubles. A state
#: is allocated whole at construction, so a larger one is refused there, naming the argument.
MAX_POINTS = 10_000_000


def as_scalar(x: Any) -> float:
    """One point for a River verb: a number, or River's one-feature dict holding one.

    >>> as_scalar({"latency": 3})
    3.0
    """
    if type(x) is float:  # the common case, at the cost of one comparison
        return x
    if isinstance(x, Mapping):
        if len(x) != 1:
            raise ValueError(f"x must be a number or a one-item dict, got a dict with {len(x)} items")
        (x,) = x.values()
    return as_point(x, "x")


def as_point(x: Any, name: str) -> float:
    """``x`` as ``update`` takes it: anything with a float value (ints, bools, fractions, decimals,
    numpy numbers) but text, which it does not parse. A number too large for a float (``10**400``)
    is +-inf, so it is rejected and counted like one, not an OverflowError mid-stream.

    >>> as_point(-10**400, "x")
    -inf
    >>> as_point(True, "x"), as_point("1", "x")
    Traceback (most recent call last):
    ...
    TypeError: x must be a number, got '1'
    """
    if isinstance(x, (str, bytes)) or not (hasattr(type(x), "__float__") or hasattr(type(x), "__index__")):
        raise TypeError(f"{name} must be a number, got {x!r}")
    if getattr(x, "ndim", 0):  # numpy < 2.4 converts a one-item array, with a DeprecationWarning
        raise TypeError(f"{name} must be a number, got {x!r}")
    try:
        return float(x)
    except OverflowError:
        return -math.inf if x < 0 else math.inf
    except TypeError:  # has __float__ but is no number (an array of one or more, a date): as above
        raise TypeError(f"{name} must be a number, got {x!r}") from None


class StreamingDetector:
    """Mixin: the Python-side verbs of a detector (see module docstring)."""

    #: Name of the Numba kernel ``(state, xs, z_out, expected_out, std_out, details) -> None``
    #: in ``perfsdk._native.kernels`` (looked up at the first batch: Numba loads only then).
    _batch_kernel: str
    #: Offset of the rejected-points counter in the state array (the one slot bad input changes).
    rejected_slot: int
    #: Offset of the learned-points counter in the state array.
    _COUNT_AT: int

    threshold: float
    name: str

    #: The constructor parameters, for repr, clone and pickling.
    _params: Callable[[], dict[str, Any]]
    #: A fresh state for these parameters (``perfsdk._native.state_buffer``).
    _fresh_state: Callable[[], Slots]
    #: The leading state slots that hold parameters (a snapshot must match them).
    _N_PARAMS: int
    #: Parameter slots laid out after the learned state (added later; a snapshot must match them too).
    _LATER_PARAMS: tuple[int, ...] = ()
    #: Raises ValueError if a snapshot's counters or ring positions are out of range.
    _check_snapshot: Callable[[Any], None]
    #: True if ``update`` runs start to finish in compiled code, never calling
    #: back into Python: under the GIL it is then atomic, and callers sharing
    #: a detector between threads need no lock around it.
    atomic_update: bool = False
    #: True once an ``AlertPipeline`` holds this detector's state in its own buffer (it has one owner).
    in_pipeline: bool = False
    #: What ``update`` returns before it can score (warming up): NaN, a raw score has no value yet.
    #: An alert score (``AlertPipeline``) is 0.0 instead (see there); ``perfsdk.checks`` holds both to it.
    warming_score: float = math.nan
    #: What an anomaly's ``details`` says about the model; replaced, never mutated.
    _details: Mapping[str, Any]

    # the Cython core supplies these
    state: np.ndarray
    slots: Slots
    last_expected: float
    last_std: float
    update: Callable[[float], float]
    _score_one: Callable[[float], float]
    _learn_one: Callable[[float], None]
    _bind: Callable[[Any], None]

    # -- counters ------------------------------------------------------------
    @property
    def n_seen(self) -> int:
        """Points offered so far, valid or not."""
        slots = self.slots
        return int(slots[self._COUNT_AT] + slots[self.rejected_slot])

    @property
    def n_learned(self) -> int:
        """Valid points learned so far."""
        return int(self.slots[self._COUNT_AT])

    @property
    def rejected(self) -> int:
        """Points refused as NaN or infinite (they left the state unchanged)."""
        return int(self.slots[self.rejected_slot])

    @property
    def details(self) -> Mapping[str, Any]:
        """What an anomaly's explanation says about the model (parameters, coefficients)."""
        return self._details

    def explain_point(self, value: float, score: float) -> tuple[int, float, float]:
        """``(index, expected, std)`` of the point just scored ``score`` (see ``Detector``)."""
        return self.n_seen - 1, self.last_expected, self.last_std

    # -- River verbs ---------------------------------------------------------
    def score_one(self, x: float | Mapping[str, float]) -> float:
        """River-style anomaly score ``|z|`` of ``x``, without learning it.

        0.0 while warming up or for a rejected value: River treats a score as
        "how anomalous", and an unscorable point is not evidence of anything.
        """
        z = self._score_one(as_scalar(x))
        return 0.0 if math.isnan(z) else abs(z)

    def learn_one(self, x: float | Mapping[str, float]) -> None:
        """Learn ``x`` without scoring it (River's verb)."""
        self._learn_one(as_scalar(x))

    # -- batches -------------------------------------------------------------
    def update_many(
        self, xs: Iterable[float] | np.ndarray, details: bool = False
    ) -> Any:
        """``update`` over a batch, in compiled code: returns the scores.

        Equivalent to ``[self.update(x) for x in xs]``, bit for bit. With
        ``details=True`` returns ``(scores, expected, std)``: what each point
        was compared with and the scale its deviation was measured in.
        """
        import numpy as np

        values = self._as_batch(xs)
        z = np.empty_like(values)
        expected, std = (np.empty_like(values), np.empty_like(values)) if details else (z[:0], z[:0])
        for _ in self._advance(values, z, expected, std, details):
            pass
        return (z, expected, std) if details else z

    def detect_many(
        self, xs: Iterable[float] | np.ndarray, timestamps: Sequence[Any] | None = None
    ) -> list[Anomaly]:
        """Update over a batch and return the anomalies found, explained."""
        import numpy as np

        values = self._as_batch(xs)
        if timestamps is not None and len(timestamps) != len(values):
            raise ValueError(
                f"timestamps has {len(timestamps)} entries but xs has {len(values)}"
            )
        first = self.n_seen
        z = np.empty_like(values)
        expected = np.empty_like(values)
        std = np.empty_like(values)
        anomalies: list[Anomaly] = []
        for lo, hi in self._advance(values, z, expected, std, True):
            details = self._details  # the model that scored this segment
            with np.errstate(invalid="ignore"):
                hits = lo + np.flatnonzero(np.abs(z[lo:hi]) > self.threshold)
            anomalies.extend(
                self._anomaly(
                    first + int(i), values[i], expected[i], std[i], z[i],
                    None if timestamps is None else timestamps[int(i)], details,
                )
                for i in hits
            )
        return anomalies

    def _advance(
        self, values: np.ndarray, z: np.ndarray, expected: np.ndarray, std: np.ndarray,
        details: bool,
    ) -> Iterator[tuple[int, int]]:
        """Run the batch kernel; yield each ``(lo, hi)`` stretch scored under one model."""
        getattr(kernels, self._batch_kernel)(self.state, values, z, expected, std, details)
        yield 0, len(values)

    def check(self, x: float, timestamp: Any = None) -> Anomaly | None:
        """``update(x)``, returning an explained ``Anomaly`` if it is one."""
        index = self.n_seen
        details = self._details
        z = self.update(x)
        if abs(z) > self.threshold:
            return self._anomaly(
                index, float(x), self.last_expected, self.last_std, z, timestamp, details
            )
        return None

    def _anomaly(
        self, index: int, value: float, expected: float, std: float, z: float, timestamp: Any,
        details: Mapping[str, Any],
    ) -> Anomaly:
        return Anomaly(
            detector=self.name, index=index, value=float(value), expected=float(expected),
            std=float(std), score=float(z), threshold=self.threshold,
            timestamp=timestamp, details=dict(details),  # the anomaly's own: editing it leaves the detector's
        )

    @staticmethod
    def _as_batch(xs: Iterable[float] | np.ndarray) -> np.ndarray:
        """``xs`` as float64 points, each as ``update`` takes it (``as_point``): a missing point is
        NaN, refused and counted; None, text, complex numbers and dates are errors."""
        import numpy as np

        array = np.asarray(xs if isinstance(xs, (list, tuple)) or hasattr(xs, "__array__") else list(xs))
        if array.ndim != 1:
            raise ValueError(f"xs must be one-dimensional, got shape {array.shape}")
        if array.dtype.kind == "O":  # Python objects (a pandas object column, Fractions): one by one
            return np.fromiter((as_point(x, "each of xs") for x in array), np.float64, len(array))
        if array.dtype.kind not in "iufb" and array.size:
            raise TypeError(f"xs must hold numbers (NaN for a missing point), got an array of {array.dtype}")
        return np.ascontiguousarray(array, dtype=np.float64)

    # -- state ---------------------------------------------------------------
    def snapshot(self) -> np.ndarray:
        """A copy of the whole state; ``restore`` it here or into a clone."""
        return self.state.copy()

    def restore(self, snapshot: np.ndarray) -> None:
        """Load a ``snapshot()`` taken from a detector with the same parameters."""
        self._load(self._checked(snapshot))

    def _checked(self, snapshot: Any) -> np.ndarray:
        """``snapshot`` as an array ``restore`` may load, or ValueError: shape, parameters and
        slots, all before anything is written (a pipeline checks every member's part so)."""
        import numpy as np

        snap = np.asarray(snapshot)
        if snap.shape != self.state.shape or snap.dtype != np.float64:
            raise ValueError(
                f"snapshot has shape {snap.shape} and dtype {snap.dtype}; this detector's "
                f"state is {self.state.shape} float64 (was it taken with other parameters?)"
            )
        fresh = self._fresh_state()
        params = [*range(self._N_PARAMS), *self._LATER_PARAMS]
        if [float(snap[i]) for i in params] != [fresh[i] for i in params]:
            raise ValueError("snapshot was taken from a detector with different parameters")
        self._check_snapshot(snap)  # the compiled code indexes with these slots, unchecked
        return snap

    def _load(self, snap: np.ndarray) -> None:
        """Put a ``_checked`` snapshot in place."""
        self.state[:] = snap  # in place: the compiled core keeps its pointer

    #: True while a point is scored to be undone (``AlertPipeline.score_one``): nothing it starts
    #: outside the state (a background fit) may outlive the undo.
    _previewing = False

    def _rewind(self, snapshot: np.ndarray) -> None:
        """Put back a ``snapshot()`` this detector took moments ago, in this same life (a
        preview's undo): unlike ``restore``, what it has in flight stays its own."""
        self._load(snapshot)

    def reset(self) -> None:
        """Forget everything learned; parameters stay."""
        self.slots[:] = self._fresh_state()

    def clone(self):
        """A fresh, unfitted detector with the same parameters."""
        return type(self)(**self._params())

    def __reduce__(self):
        return (_restore_detector, (type(self), self._params(), self.snapshot()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


def check_slots(snap: Any, slots: Mapping[str, tuple[int, float, float]]) -> None:
    """Each named slot must hold a whole number in [low, high) (a corrupt snapshot otherwise)."""
    for name, (index, low, high) in slots.items():
        value = snap[index]
        if not (math.isfinite(value) and value == int(value) and low <= value < high):
            raise ValueError(f"snapshot is corrupt: {name} = {value!r} is not a whole number in [{low}, {high})")


def _restore_detector(cls: type, params: dict[str, Any], snapshot: np.ndarray) -> StreamingDetector:
    detector = cls(**params)
    detector.restore(snapshot)
    return detector
