"""ZScoreDetector: rolling-window or EWMA z-score over a stream, compiled."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from perfsdk._native import ZScoreCore, kernels, state_buffer
from perfsdk._runtime import check_int, check_number, check_str
from perfsdk.detect._base import MAX_POINTS, StreamingDetector, check_slots

if TYPE_CHECKING:
    from perfsdk._native import Slots

__all__ = ["ZScoreDetector"]


class ZScoreDetector(StreamingDetector, ZScoreCore):
    """Streaming Z-score anomaly detector.

    Each point is scored against the statistics of the points before it,
    ``z = (x - mean) / std``, then learned. Two ways to keep those statistics:

    * ``window=N`` (default 256): the exact mean and sample standard deviation
      (ddof=1) of the last N points. Updated in O(1) per point and recomputed
      exactly from a ring buffer every N points, so rounding error never
      accumulates: it stays accurate over tens of millions of updates, even
      for values like 1e9 +/- 1.
    * ``alpha=a``: exponentially weighted mean and variance with smoothing
      factor ``a`` (memory of roughly ``1/a`` points, O(1) state).

    Parameters
    ----------
    window
        Length of the rolling window (2 to ``MAX_POINTS``, 10**7; default 256). Not with ``alpha``.
    alpha
        EWMA smoothing factor in (0, 1); selects EWMA mode (not with ``window``). Not 1:
        the mean would be the last point alone and the variance 0, every change infinite.
    threshold
        ``|z|`` above this is an anomaly (default 3.0).
    warmup
        Points to learn before the first score; until then ``update`` returns
        NaN. Default: ``window`` (a full window), or ``ceil(2 / alpha)``. At most
        ``MAX_POINTS`` (10**7).
    min_std
        Floor on the standard deviation. Constant-series rule: with a standard
        deviation of 0 (and no floor), a point equal to the mean scores 0 and
        any other point scores +/-inf -- any change of a perfectly constant
        metric is an anomaly. Set ``min_std`` (in the metric's unit) to
        tolerate small changes of a quantised metric.
    clip
        Bounded influence, in standard deviations (0, the default: off). A point
        scoring beyond ``clip`` right after one that did not is learned as if it
        lay at ``clip`` standard deviations: one stalled request, 100 times the
        usual, then widens the statistics as little as a merely unusual one,
        where learned as it is it would hide any later change smaller than
        itself for a whole window. The second such point in a row is learned as
        it is, so a level shift is still learned. Scores are unchanged.
    name
        Name used in anomaly records; default describes the configuration.

    Attributes
    ----------
    state : numpy.ndarray
        The whole state, shared by the Cython and Numba engines.
    rejected : int
        NaN/inf points refused (the state was left unchanged).
    last_expected, last_std : float
        What the last scored point was compared with.

    Examples
    --------
    >>> det = ZScoreDetector(window=4)
    >>> [round(det.update(x), 3) for x in [10.0, 11.0, 9.0, 10.0, 10.5, 30.0]]
    [nan, nan, nan, nan, 0.612, 23.275]
    >>> det.update(float("nan")), det.rejected
    (nan, 1)
    >>> print(det.check(100.0))
    #7: value 100 is 8.4 std above the expected 14.875 (std 10.1, ...) [zscore(window=4)]

    A batch goes through the Numba kernel and gives the same numbers:

    >>> import numpy as np
    >>> det.reset()
    >>> det.update_many(np.array([10.0, 11.0, 9.0, 10.0, 10.5, 30.0])).round(3)
    array([   nan,    nan,    nan,    nan,  0.612, 23.275])

    References
    ----------
    B. P. Welford, "Note on a method for calculating corrected sums of squares
    and products", Technometrics 4(3), 1962. T. Finch, "Incremental calculation
    of weighted mean and variance", 2009.
    """

    atomic_update = True
    _batch_kernel = "zscore_update_many"
    rejected_slot = kernels.ZS_REJECTED
    _COUNT_AT = kernels.ZS_COUNT
    _N_PARAMS = kernels.ZS_COUNT
    _LATER_PARAMS = (kernels.ZS_CLIP,)

    def __init__(
        self,
        window: int | None = None,
        *,
        alpha: float | None = None,
        threshold: float = 3.0,
        warmup: int | None = None,
        min_std: float = 0.0,
        clip: float = 0.0,
        name: str | None = None,
    ) -> None:
        if alpha is not None:
            if window is not None:
                raise ValueError(f"give window or alpha, not both (window={window!r}, alpha={alpha!r}): "
                                 "a detector keeps a rolling window or an EWMA")
            check_number("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
        window = 256 if window is None else window
        check_int("window", window, minimum=2, maximum=MAX_POINTS)
        check_number("threshold", threshold, low=0.0, low_open=True)
        if warmup is None:
            if alpha is None:
                warmup = window
            elif 2.0 / float(alpha) <= MAX_POINTS:
                warmup = math.ceil(2.0 / float(alpha))
            else:  # a warm-up that long never ends (2 / 5e-324 is inf: an OverflowError)
                raise ValueError(f"alpha must be at least {2.0 / MAX_POINTS:g} for its default warmup, 2 / alpha "
                                 f"points (at most {MAX_POINTS:,}), got {alpha!r}: give a warmup")
        check_int("warmup", warmup, minimum=2, maximum=MAX_POINTS)
        check_number("min_std", min_std, low=0.0)
        check_number("clip", clip, low=0.0)
        if name is not None:
            check_str("name", name)
        self.window = int(window)
        self.alpha = None if alpha is None else float(alpha)
        self.threshold = float(threshold)
        self.warmup = int(warmup)
        self.min_std = float(min_std)
        self.clip = float(clip)
        self.name = name or (
            f"zscore(alpha={self.alpha:g})" if self.alpha is not None else f"zscore(window={self.window})"
        )
        self._custom_name = name
        self._details = self._params()
        self._bind(self._fresh_state())
        self.flag_threshold = self.threshold  # remember flagged points' explanations (rare: cheap)

    def _fresh_state(self) -> Slots:
        ewma = self.alpha is not None
        state = state_buffer(kernels.ZS_HEADER + (0 if ewma else self.window))
        state[kernels.ZS_MODE] = kernels.ZS_MODE_EWMA if ewma else kernels.ZS_MODE_WINDOW
        state[kernels.ZS_WINDOW] = self.window
        state[kernels.ZS_INV_WINDOW] = 1.0 / self.window
        state[kernels.ZS_ALPHA] = self.alpha or 0.0
        state[kernels.ZS_WARMUP] = self.warmup
        state[kernels.ZS_MIN_STD] = self.min_std
        state[kernels.ZS_CLIP] = self.clip
        return state

    @property
    def window_mean(self) -> float:
        """The mean of the values the detector holds now (its window, or the EWMA); NaN before any.

        >>> det = ZScoreDetector(window=4); _ = det.update_many([1.0, 2.0, 3.0])
        >>> det.window_mean
        2.0
        """
        state = self.slots
        if not state[kernels.ZS_COUNT]:
            return math.nan
        return float(state[kernels.ZS_MEAN] + state[kernels.ZS_SHIFT])

    def explain_point(self, value: float, score: float) -> tuple[int, float, float]:
        """``(index, expected, std)`` of the point just scored ``score``: a flagged point's
        own, from a small ring of recent ones, even after other threads' updates."""
        point = self.flagged_point(value, score)
        return point if point is not None else (self.n_seen - 1, self.last_expected, self.last_std)

    def _check_snapshot(self, snap: Any) -> None:
        check_slots(snap, {
            "count": (kernels.ZS_COUNT, 0, math.inf), "rejected": (kernels.ZS_REJECTED, 0, math.inf),
            "position": (kernels.ZS_POS, 0, 1 if self.alpha is not None else self.window),
            "since_resync": (kernels.ZS_SINCE_RESYNC, 0, max(self.window, 1)),
        })
        if not (math.isfinite(snap[kernels.ZS_MEAN]) and math.isfinite(snap[kernels.ZS_SHIFT])
                and 0 <= snap[kernels.ZS_M2] < math.inf):
            raise ValueError("snapshot is corrupt: mean, shift or M2 out of range")
        count, window = snap[kernels.ZS_COUNT], self.window
        if self.alpha is None and count < window and snap[kernels.ZS_POS] != count:  # the ring fills in order
            raise ValueError(f"snapshot is corrupt: {count:g} points learned but the window's next slot is "
                             f"{snap[kernels.ZS_POS]:g}")
        ring = snap[kernels.ZS_HEADER:kernels.ZS_HEADER + min(int(count), window)] if self.alpha is None else snap[:0]
        if not (abs(ring) <= kernels.MAX_MAGNITUDE).all():  # one pass: score_one restores each call
            raise ValueError("snapshot is corrupt: its window holds a value no update accepts")
        if snap[kernels.ZS_EXTREME] not in (0.0, 1.0):
            raise ValueError("snapshot is corrupt: its last-point-extreme flag is neither 0 nor 1")

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"window": self.window} if self.alpha is None else {"alpha": self.alpha}
        params.update(threshold=self.threshold, warmup=self.warmup, min_std=self.min_std)
        if self.clip:
            params["clip"] = self.clip
        if self._custom_name is not None:
            params["name"] = self._custom_name
        return params
