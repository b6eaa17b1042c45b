"""ArimaDetector: one-step ARIMA forecast errors as anomaly scores, compiled.

statsmodels fits the model (on a background thread); the per-point work --
forecast, residual, running scale -- runs in Cython per event and in a Numba
kernel over batches, on one shared state array.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from perfsdk._native import ArimaCore, kernels as K
from perfsdk._runtime import at_fork, check_bool, check_int, check_number, check_str
from perfsdk.detect._base import MAX_POINTS, StreamingDetector, as_point, check_slots
from perfsdk.detect.anomaly import Anomaly
from perfsdk.detect._forecast import Forecast, forecast_ahead
from perfsdk.detect._fitting import (
    AUTO_MAX_D, AUTO_MAX_P, AUTO_MAX_Q, FITS, SEASON_CANDIDATES, ArimaFit, FitError, choose_order,
    detect_season, differencing_taps, fit_arima, quick_fit, robust_sample,
)

__all__ = ["ArimaDetector", "Forecast"]

#: The longest season: its default warm-up and history hold two of it, within ``MAX_POINTS``.
MAX_SEASON = MAX_POINTS // 4

log = logging.getLogger("perfsdk.detect")
#: What a detector knows of its fits besides its state: kept by pickling and copying, cleared by ``reset``.
_FIT_HISTORY = ("provisional", "fits", "level_shifts", "fit_failures", "fits_dropped", "last_fit_error")


class ArimaDetector(StreamingDetector, ArimaCore):
    """Streaming ARIMA(p, d, q) anomaly detector and forecaster.

    The model, on the series differenced ``d`` times (and once at lag
    ``season`` if given): ``w_t = c + sum(phi_i w_{t-i}) + sum(theta_j e_{t-j}) + e_t``.
    Each point is scored by its one-step-ahead forecast error over a robust
    running scale of recent errors, ``score = (y_t - forecast_t) / scale``,
    so scores are comparable across series; ``abs(score) > threshold`` is an
    anomaly. The scale has a floor (``layout.SCALE_FLOOR_OF_SIGMA``, ``_OF_LEVEL``):
    a flat stretch, forecast exactly, does not shrink it to nothing and leave
    every later point flagged.

    Scores start early: after a few dozen points (``quick_start``) a model in
    closed form (AR(1) by Yule-Walker on the differenced series) is installed
    at once, so a fast stream or a replay is scored from its start. At
    ``warmup`` points statsmodels fits the real model on a background thread
    (``update`` never waits) and the new coefficients are swapped in at the
    next call, the lags rebuilt from the recent history so the stream goes on
    where it was. Fits read a robust sample (outliers clipped to 6 robust
    deviations), so a spike in the window drives neither the order nor the
    residual scale. Refits follow every ``refit_every`` points and after
    ``shift_run`` anomalies in a row (a level shift). A fit that fails or does
    not converge keeps the previous model and is counted (``fit_failures``),
    never raised; if there is no fitted model yet, the closed-form one stands
    in (``provisional``) and the fit is tried again a warm-up later -- a
    detector is never left with no model.

    Parameters
    ----------
    order
        ``(p, d, q)``, or ``"auto"`` (default): d by unit-root tests and
        p, q <= 2 by AIC, chosen on the warm-up window.
    season
        Seasonal period in points (e.g. 288 for a daily cycle of 5-minute
        samples): adds one seasonal difference. ``"auto"``: each fit looks
        for a daily or weekly period of 5-minute samples (288, 2016 points;
        ``_fitting.detect_season``) once the history holds two of them, and
        models it when the series repeats with it (``model.season`` says).
        At most ``MAX_SEASON`` (2,500,000).
    threshold
        ``abs(score)`` above this is an anomaly. The default, 5, is higher
        than the Z-score detector's 3: one-step errors of real metrics are
        heavy-tailed, and 5 scored best on the NAB corpus (docs/benchmarks.md).
    warmup
        Points before the first fit (and the first score).
    history
        How many recent points refits (and the lag rebuild) use. It and ``warmup``
        are at most ``MAX_POINTS`` (10**7): the state holds the history.
    refit_every
        Refit after this many points (0: never).
    shift_run
        Refit after this many anomalies in a row (0: never).
    scale_beta
        Weight of each new residual in the running scale (memory ~1/beta), in (0, 1).
    scale_clip
        Residuals enter the scale clipped at ``scale_clip`` scales, so one
        outlier cannot inflate it.
    quick_start
        Score from the first few dozen points with the closed-form model until
        the fitted one lands (default). ``False``: nothing is scored before
        the first fit.
    background
        Fit on the shared background thread (default). ``False`` fits inline
        at the exact stream position: deterministic, for tests and offline
        analysis.
    model
        Start from known coefficients (an ``ArimaFit``); see ``from_params``.
    name
        Name used in anomaly records.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = 100 + np.cumsum(rng.normal(0, 1, 400))          # a wandering metric
    >>> det = ArimaDetector(order=(1, 1, 1), warmup=200, background=False)
    >>> scores = det.update_many(y)
    >>> det.model.order, det.fits, int(np.isnan(scores).sum())   # scored from point 32 on
    ((1, 1, 1), 1, 32)
    >>> anomaly = det.check(y[-1] + 25.0)                   # a sudden jump
    >>> anomaly.score > det.threshold
    True
    >>> det.forecast(3).mean.shape
    (3,)

    References
    ----------
    G. E. P. Box, G. M. Jenkins, G. C. Reinsel, *Time Series Analysis:
    Forecasting and Control*. statsmodels' SARIMAX fits the coefficients.
    """

    _batch_kernel = "arima_update_many"
    rejected_slot = K.AR_REJECTED
    _COUNT_AT = K.AR_COUNT
    _N_PARAMS = K.AR_N_PARAMS

    # what it knows of its fits (``_FIT_HISTORY``), set by ``_clear_history``
    provisional: bool
    fits: int
    level_shifts: int
    fit_failures: int
    fits_dropped: int
    last_fit_error: str | None

    def __init__(
        self,
        order: tuple[int, int, int] | str = "auto",
        *,
        season: int | str | None = None,
        threshold: float = 5.0,
        warmup: int | None = None,
        history: int | None = None,
        refit_every: int = 2000,
        shift_run: int = 8,
        scale_beta: float = 0.02,
        scale_clip: float = 3.0,
        quick_start: bool = True,
        background: bool = True,
        model: ArimaFit | None = None,
        name: str | None = None,
    ) -> None:
        self.order = _check_order(order)
        self.season: int | str | None = (
            "auto" if season == "auto" else _check_int("season", season, 2, MAX_SEASON) if season is not None else None)
        if isinstance(self.order, tuple):
            p_cap, d_cap, q_cap = self.order
        else:  # "auto": room for the largest order the search may pick
            p_cap, d_cap, q_cap = AUTO_MAX_P, AUTO_MAX_D, AUTO_MAX_Q
        if self.season == "auto" and model is not None:
            raise ValueError("model cannot be combined with season='auto'")
        fixed = self.season if isinstance(self.season, int) else None
        most = max(SEASON_CANDIDATES) if self.season == "auto" else fixed  # room for the longest period
        self._taps_capacity = len(differencing_taps(d_cap, most))
        self._p_cap, self._q_cap, self._m = p_cap, q_cap, d_cap + (most or 0)
        # a fit needs data; known coefficients only need the differencing lags. A period to be
        # found is modelled once the history holds two of it: the first fits need none
        first_m = d_cap + (fixed or 0)
        self._min_fit = first_m + 2 * (p_cap + q_cap) + 10
        min_warmup = self._m + 1 if model is not None else self._min_fit
        self.warmup = _check_int("warmup", 200 + 2 * first_m if warmup is None else warmup, min_warmup, MAX_POINTS)
        room = 2 * (most or 0) + 64 if self.season == "auto" else 512
        self.history = _check_int("history", max(self.warmup, room) if history is None else history, self.warmup,
                                  MAX_POINTS)
        self.threshold = _check_positive("threshold", threshold)
        self.refit_every = _check_int("refit_every", refit_every, 0)
        self.shift_run = _check_int("shift_run", shift_run, 0)
        # below 1: at 1 the scale is the last error alone, and one exact forecast zeroes it
        self.scale_beta = check_number("scale_beta", scale_beta, 0.0, 1.0, low_open=True, high_open=True)
        self.scale_clip = _check_positive("scale_clip", scale_clip)
        self.background = check_bool("background", background)
        self.quick_start = check_bool("quick_start", quick_start)
        # the first score: early with a closed-form model, else once the first fit is in
        self._first_score = min(self.warmup, max(self._min_fit, 32)) if quick_start and model is None \
            else self.warmup
        if model is not None:
            _check_model(model, self.order, p_cap, q_cap)
        self._initial_model = model
        if name is not None:
            check_str("name", name)
        self._custom_name = name
        self.name = name or f"arima{self.order if self.order != 'auto' else '(auto)'}" + (
            f"[season={self.season}]" if self.season else ""
        )
        self._clear_history()
        self._pending: tuple[int, ArimaFit | FitError | _StandIn] | None = None  # (generation, result)
        self._generation = 0
        # offsets of the state's variable-length parts: fixed for this detector's life
        self._lay = K.arima_layout(self._p_cap, self._q_cap, self._m, self._taps_capacity, self.history)
        self._bind(self._fresh_state())
        self._sync_model()
        at_fork(self._after_fork)

    @classmethod
    def from_params(
        cls,
        order: tuple[int, int, int],
        *,
        ar: Sequence[float] = (),
        ma: Sequence[float] = (),
        intercept: float = 0.0,
        sigma2: float = 1.0,
        **kwargs: Any,
    ) -> "ArimaDetector":
        """A detector with known coefficients: no fitting, no refits (unless asked).

        For tests, and for a model fitted offline. ``kwargs`` are the
        constructor's (``season``, ``threshold``, ``warmup``, ...).

        >>> det = ArimaDetector.from_params((1, 0, 0), ar=[0.5], intercept=10.0, warmup=5)
        >>> _ = det.update_many([12.0, 11.0, 14.0])
        >>> float(det.forecast(1).mean[0])     # 10 + 0.5 * 14
        17.0
        """
        kwargs.setdefault("refit_every", 0)
        kwargs.setdefault("shift_run", 0)
        model = ArimaFit(
            order=tuple(order),  # type: ignore[arg-type]
            intercept=float(intercept),
            ar=tuple(float(a) for a in ar),
            ma=tuple(float(m) for m in ma),
            sigma2=float(sigma2),
        )
        return cls(order, model=model, **kwargs)

    # -- state ---------------------------------------------------------------
    def _fresh_state(self) -> np.ndarray:
        state = np.zeros(self._lay["size"])
        state[K.AR_P], state[K.AR_Q] = self._p_cap, self._q_cap
        state[K.AR_M], state[K.AR_NTAPS] = self._m, self._taps_capacity
        state[K.AR_WARMUP], state[K.AR_HISTORY] = self._first_score, self.history
        state[K.AR_REFIT_EVERY], state[K.AR_SHIFT_RUN] = self.refit_every, self.shift_run
        state[K.AR_THRESHOLD] = self.threshold
        state[K.AR_SCALE_BETA], state[K.AR_SCALE_CLIP] = self.scale_beta, self.scale_clip
        state[K.AR_SCALE] = math.nan
        if self._initial_model is not None:
            self._write_model(state, self._initial_model)
        else:
            state[K.AR_RETRY_AT] = self._first_score  # the first (closed-form, or fitted) model
        return state

    def _write_model(self, state: np.ndarray, fit: ArimaFit) -> None:
        """Install ``fit``'s coefficients (zero-padded to capacity) into ``state``."""
        lay = self._lay
        p, d, q = fit.order
        state[lay["phi"] : lay["phi"] + self._p_cap] = np.pad(fit.ar, (0, self._p_cap - p))
        state[lay["theta"] : lay["theta"] + self._q_cap] = np.pad(fit.ma, (0, self._q_cap - q))
        taps = differencing_taps(d, fit.season if self.season == "auto" else self.season)  # type: ignore[arg-type]
        taps += [(1, 0.0)] * (self._taps_capacity - len(taps))  # inert padding
        state[lay["tap_lag"] : lay["tap_lag"] + self._taps_capacity] = [lag for lag, _ in taps]
        state[lay["tap_coef"] : lay["tap_coef"] + self._taps_capacity] = [c for _, c in taps]
        state[K.AR_LAGS] = max((lag for lag, c in taps if c != 0.0), default=0)
        state[K.AR_INTERCEPT], state[K.AR_SIGMA2] = fit.intercept, fit.sigma2
        state[K.AR_D], state[K.AR_FIT_P], state[K.AR_FIT_Q] = d, p, q
        state[K.AR_SCALE] = math.sqrt(fit.sigma2)
        state[K.AR_FITTED] = 1.0

    def _history_values(self, since_regime: bool = False) -> np.ndarray:
        """The recent points, oldest first (what fits and the lag rebuild read).

        With ``since_regime`` only those since the last level shift, if there
        are enough of them to fit a model.
        """
        lay = self._lay
        ring = self.state[lay["hist"] : lay["hist"] + self.history]
        count = int(self.state[K.AR_COUNT])
        if count < self.history:
            values = ring[:count].copy()
        else:
            pos = int(self.state[K.AR_HIST_POS])
            values = np.concatenate((ring[pos:], ring[:pos]))
        regime = count - int(self.state[K.AR_REGIME_START])
        if since_regime and self._min_fit <= regime < len(values):
            return values[-regime:]
        return values

    def _check_snapshot(self, snap: np.ndarray) -> None:
        lay = self._lay
        check_slots(snap, {
            "count": (K.AR_COUNT, 0, math.inf), "rejected": (K.AR_REJECTED, 0, math.inf),
            "history position": (K.AR_HIST_POS, 0, self.history),
            "lag position": (K.AR_YRING_POS, 0, max(self._m, 1)),
            "fitted": (K.AR_FITTED, 0, 2), "fit state": (K.AR_FIT_STATE, 0, 3),
            "AR order": (K.AR_FIT_P, 0, self._p_cap + 1), "MA order": (K.AR_FIT_Q, 0, self._q_cap + 1),
            "d": (K.AR_D, 0, 3), "longest lag": (K.AR_LAGS, 0, self._m + 1),
        })
        unwritten = 0 if snap[K.AR_FITTED] == 0.0 else 1  # no model yet: its taps are not written either
        for k in range(self._taps_capacity):
            check_slots(snap, {"tap lag": (lay["tap_lag"] + k, unwritten, self._m + 1)})

    def restore(self, snapshot: np.ndarray) -> None:
        """Load a ``snapshot()``. The fit counters and ``provisional`` are not in it: a fit still
        due on a model no fit of this life installed counts as the stand-in (pickling keeps them)."""
        super().restore(snapshot)
        if self.state[K.AR_FIT_STATE] != K.FIT_IDLE:
            self.state[K.AR_FIT_STATE] = K.FIT_IDLE  # that fit belongs to another life
        self._new_life()
        self.provisional = bool(self.state[K.AR_FITTED]) and self.state[K.AR_RETRY_AT] > 0 and self.fits == 0
        self._sync_model()

    def reset(self) -> None:
        super().reset()
        self._new_life()
        self._clear_history()
        self._sync_model()

    def _new_life(self) -> None:
        """A fit asked for before a reset or restore never lands (it was fitted on the old life's data)."""
        self._generation += 1
        self._pending, self._has_pending = None, False

    def _clear_history(self) -> None:
        self.provisional = False  # True while the closed-form model stands in for a fit
        self.fits = 0
        self.level_shifts = 0
        self.fit_failures = 0
        self.fits_dropped = 0
        self.last_fit_error = None

    def __reduce__(self):
        """Pickled and copied whole: the state, and the fit history a snapshot does not hold."""
        rebuild, args = super().__reduce__()
        return _with_fit_history, (rebuild, args, {name: getattr(self, name) for name in _FIT_HISTORY})

    def _sync_model(self) -> None:
        """Rebuild ``model`` and the anomaly explanation from the state."""
        s = self.state
        if s[K.AR_FITTED] == 0.0:
            self.model: ArimaFit | None = None
            self._details: Mapping[str, Any] = {"order": self.order, "season": self.season, "fitted": False}
            return
        lay = self._lay
        p, d, q = int(s[K.AR_FIT_P]), int(s[K.AR_D]), int(s[K.AR_FIT_Q])
        self.model = ArimaFit(
            order=(p, d, q),
            intercept=float(s[K.AR_INTERCEPT]),
            ar=tuple(float(v) for v in s[lay["phi"] : lay["phi"] + p]),
            ma=tuple(float(v) for v in s[lay["theta"] : lay["theta"] + q]),
            sigma2=float(s[K.AR_SIGMA2]),
            season=self._season_in_state(d),
        )
        self._details = {
            "order": self.model.order,
            "season": self.model.season,
            "intercept": self.model.intercept,
            "ar": self.model.ar,
            "ma": self.model.ma,
            "sigma2": self.model.sigma2,
        }

    def _season_in_state(self, d: int) -> int | None:
        """The installed model's period: the configured one, or (``"auto"``) read off its taps."""
        if self.season != "auto":
            return self.season  # type: ignore[return-value]
        longest = int(self.state[K.AR_LAGS])
        return longest - d if longest > d else None

    # -- fitting -------------------------------------------------------------
    def _fit(self, ys: np.ndarray) -> ArimaFit | FitError | _StandIn:
        """A fit on the robust sample of ``ys`` (``_fit_sample``)."""
        return self._fit_sample(robust_sample(ys))

    def _fit_sample(self, ys: np.ndarray) -> ArimaFit | FitError | _StandIn:
        """A fit on ``ys``, a robust sample; with no fitted model yet, never an error: the
        closed-form model stands in (and the error is still counted)."""
        season = detect_season(ys) if self.season == "auto" else self.season
        unfitted = self.model is None or self.provisional or self.model.season != season
        try:
            if self.order == "auto" and unfitted:
                return choose_order(ys, season)  # type: ignore[arg-type]
            order = self.order if self.order != "auto" else self.model.order  # type: ignore[union-attr]
            return fit_arima(ys, order, season)  # type: ignore[arg-type]
        except FitError as exc:
            if unfitted and self.quick_start:
                return _StandIn(quick_fit(ys, self._quick_order(), season), str(exc))  # type: ignore[arg-type]
            return exc

    def _quick_order(self) -> tuple[int, int, int]:
        """The closed-form model's order: the configured one, or AR(1) for ``"auto"``."""
        return self.order if isinstance(self.order, tuple) else (1, 0, 0)

    def _fit_requested(self) -> None:
        """Called by either engine when the state asks for a fit (not for a preview's point: the
        state that asked is put back, and the stream asks again if it learns that point)."""
        if self._previewing:
            return
        s = self.state
        if s[K.AR_SHIFT_RUN] > 0 and s[K.AR_RUN] >= s[K.AR_SHIFT_RUN] and s[K.AR_RETRY_AT] == 0:
            self._on_level_shift()
            return
        ys = self._history_values(since_regime=True)
        if self.quick_start and s[K.AR_FITTED] == 0.0 and s[K.AR_COUNT] < self.warmup:
            # too early for statsmodels: the closed-form model now, synchronously (microseconds)
            fixed = self.season if isinstance(self.season, int) else None  # too early to look for a period
            self._install(_StandIn(quick_fit(robust_sample(ys), self._quick_order(), fixed), None))
            return
        if not self.background:
            self._install(self._fit(ys))
            return
        self.state[K.AR_FIT_STATE] = K.FIT_IN_FLIGHT
        generation = self._generation
        if not FITS.submit(lambda: self._fit_in_background(generation, ys)):
            self.fits_dropped += 1
            self._install(FitError("the fit queue is full; will ask again later"))

    def _on_level_shift(self) -> None:
        """A run of anomalies: the level moved. Re-anchor now, refit on new data soon.

        A refit right away would see mostly the old regime. Instead a model
        without differencing has its intercept moved so its mean is the run's
        mean (a differenced model follows a new level by itself), and a fit on
        the data since the onset is scheduled ``warmup / 2`` points later.
        """
        s, run = self.state, int(self.state[K.AR_RUN])
        model = self.model
        if model is not None and model.order[1] == 0 and not model.season:
            level = float(np.mean(self._history_values()[-run:]))
            s[K.AR_INTERCEPT] = level * (1.0 - sum(model.ar))
            lay = self._lay
            s[lay["elag"] : lay["elag"] + self._q_cap] = 0.0  # old-regime errors say nothing now
        s[K.AR_REGIME_START] = s[K.AR_COUNT] - run
        s[K.AR_RETRY_AT] = s[K.AR_COUNT] + max(self.warmup // 2, self._min_fit)
        s[K.AR_FIT_STATE] = K.FIT_IDLE
        s[K.AR_RUN] = 0.0
        self.level_shifts += 1
        self._sync_model()

    def _fit_in_background(self, generation: int, ys: np.ndarray) -> None:
        # On the worker thread: fit, then hand over; the stream's own thread installs it.
        try:
            result = self._fit(ys)
        except Exception as exc:  # a statsmodels bug is a failed fit, not a dead worker
            result = FitError(f"{type(exc).__name__}: {exc}")
        self._pending = (generation, result)  # one assignment: a reset in between is seen by its generation
        self._has_pending = True

    def _install_landed(self) -> None:
        """Install a fit that has landed, as the next ``update`` would first thing."""
        if self._has_pending:
            self._apply_pending()

    def _apply_pending(self) -> None:
        if self._previewing:  # installed into a state about to be put back: it would be lost
            return
        pending, self._pending = self._pending, None
        self._has_pending = False
        if pending is not None and pending[0] == self._generation:
            self._install(pending[1])

    def _install(self, result: ArimaFit | FitError | _StandIn) -> None:
        s = self.state
        s[K.AR_FIT_STATE] = K.FIT_IDLE
        s[K.AR_SINCE_FIT] = 0.0
        s[K.AR_RUN] = 0.0
        if isinstance(result, _StandIn):
            if result.error is not None:
                self.fit_failures += 1
                if self.last_fit_error is None:
                    log.warning("perfsdk: %s: %s (a closed-form model stands in)", self.name, result.error)
                self.last_fit_error = result.error
            self._write_model(s, result.fit)
            K.arima_replay(s, self._history_values())
            self.provisional = True
            # the real fit: at warm-up, or (after a failure) a warm-up later
            count = s[K.AR_COUNT]
            s[K.AR_RETRY_AT] = self.warmup if count < self.warmup else count + self.warmup
            self._sync_model()
            return
        if isinstance(result, FitError):
            self.fit_failures += 1
            if self.last_fit_error is None:
                log.warning("perfsdk: %s: %s (keeping the previous model)", self.name, result)
            self.last_fit_error = str(result)
            # back off: an unfitted detector tries again a warm-up later, a
            # fitted one at its next scheduled refit
            s[K.AR_RETRY_AT] = s[K.AR_COUNT] + self.warmup if s[K.AR_FITTED] == 0.0 else 0.0
            return
        s[K.AR_RETRY_AT] = 0.0
        self.provisional = False
        self._write_model(s, result)
        K.arima_replay(s, self._history_values())
        self.fits += 1
        self._sync_model()

    def wait_for_fits(self, timeout_s: float = 30.0) -> bool:
        """Block until queued background fits are delivered, then install them; False if
        ``timeout_s`` passed first (the fits queued by every detector are waited for).

        For tests, scripts and shutdown; never needed on the hot path.
        """
        done = FITS.flush(timeout_s)
        self._install_landed()
        return done

    def _after_fork(self) -> None:
        # A fit in flight ran on the parent's worker thread: it never lands here. Ask again.
        if self.state[K.AR_FIT_STATE] == K.FIT_IN_FLIGHT:
            self._generation += 1
            self.state[K.AR_FIT_STATE] = K.FIT_REQUESTED
            self._fit_requested()

    # -- batches -------------------------------------------------------------
    def _advance(
        self, values: np.ndarray, z: np.ndarray, expected: np.ndarray, std: np.ndarray,
        details: bool,
    ) -> Iterator[tuple[int, int]]:
        self._install_landed()
        start, n = 0, len(values)
        while True:
            stop = K.arima_update_many(self.state, values, start, z, expected, std, details)
            yield start, stop
            if self.state[K.AR_FIT_STATE] == K.FIT_REQUESTED:
                self._fit_requested()  # the kernel stopped right after the asking point
            if stop >= n:
                return
            start = stop

    def check(self, x: float, timestamp: Any = None) -> Anomaly | None:
        """``update(x)``, explained by the model that scored it: a fit that landed is installed
        before the explanation is read, as ``detect_many`` does (it was the old model's)."""
        x = as_point(x, "x")  # first: a refused type installs nothing
        self._install_landed()
        return super().check(x, timestamp)

    # -- forecasting ---------------------------------------------------------
    def forecast(self, h: int = 1, level: float = 0.95) -> Forecast:
        """Mean and prediction interval for the next ``h`` points.

        The interval uses the model's innovation variance and its psi-weights
        (as statsmodels' ``get_forecast`` does once its filter has converged).
        """
        _check_int("h", h, 1, MAX_POINTS)
        level = check_number("level", level, 0.0, 1.0, low_open=True, high_open=True)
        model = self.model
        if model is None:
            raise ValueError("no model yet: the detector is still warming up")
        s, lay = self.state, self._lay
        p, _, q = model.order
        needed = int(s[K.AR_LAGS]) + p  # the differencing's lags, then p differenced points
        if s[K.AR_COUNT] < needed:  # the lags still hold zeros, not data
            raise ValueError(f"too few points to forecast from yet: the model needs its last {needed}, "
                             f"has {int(s[K.AR_COUNT])}")
        m = self._m
        ring = s[lay["yring"] : lay["yring"] + m]
        pos = int(s[K.AR_YRING_POS])
        past_y = np.concatenate((ring[pos:], ring[:pos])).tolist() if m else []  # oldest first
        return forecast_ahead(model, differencing_taps(model.order[1], model.season), past_y,
                              list(s[lay["wlag"] : lay["wlag"] + p]), list(s[lay["elag"] : lay["elag"] + q]),
                              h, level)

    # -- description -----------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"order": self.order}
        if self.season is not None:
            params["season"] = self.season
        params.update(
            threshold=self.threshold, warmup=self.warmup, history=self.history,
            refit_every=self.refit_every, shift_run=self.shift_run,
            scale_beta=self.scale_beta, scale_clip=self.scale_clip, quick_start=self.quick_start,
            background=self.background,
        )
        if self._initial_model is not None:
            params["model"] = self._initial_model
        if self._custom_name is not None:
            params["name"] = self._custom_name
        return params

    def stats(self) -> dict[str, Any]:
        """Counters: points, rejections, fits, failures, drops, the last fit error."""
        return {
            "n_seen": self.n_seen, "rejected": self.rejected, "fits": self.fits,
            "level_shifts": self.level_shifts, "fit_failures": self.fit_failures,
            "fits_dropped": self.fits_dropped, "provisional": self.provisional,
            "last_fit_error": self.last_fit_error, "model": self.model,
        }


def _with_fit_history(rebuild: Any, args: tuple[Any, ...], history: dict[str, Any]) -> ArimaDetector:
    detector = rebuild(*args)
    for name, value in history.items():
        setattr(detector, name, value)
    return detector


class _StandIn:
    """A closed-form model standing in for a fit (at the start, or after a failed one)."""

    __slots__ = ("fit", "error")

    def __init__(self, fit: ArimaFit, error: str | None) -> None:
        self.fit, self.error = fit, error


def _check_order(order: Any) -> tuple[int, int, int] | str:
    if order == "auto":
        return "auto"
    if (
        isinstance(order, (tuple, list)) and len(order) == 3
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in order)
        and order[1] <= 2 and order[0] <= 10 and order[2] <= 10
    ):
        return (int(order[0]), int(order[1]), int(order[2]))
    raise ValueError(f"order must be (p, d, q) with p, q in 0..10 and d in 0..2, or 'auto'; got {order!r}")


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    return check_int(name, value, minimum=minimum, maximum=maximum)


def _check_positive(name: str, value: Any) -> float:
    return check_number(name, value, low=0.0, low_open=True)


def _check_model(model: Any, order: Any, p_cap: int, q_cap: int) -> None:
    if not isinstance(model, ArimaFit):
        raise TypeError(f"model must be an ArimaFit, got {type(model).__name__}")
    if order == "auto":
        raise ValueError("model cannot be combined with order='auto'")
    if tuple(model.order) != tuple(order):
        raise ValueError(f"model has order {model.order} but order is {order}")
    p, _, q = model.order
    if len(model.ar) != p or len(model.ma) != q:
        raise ValueError(f"model needs {p} ar and {q} ma coefficients, got {len(model.ar)} and {len(model.ma)}")
    values = (model.intercept, *model.ar, *model.ma, model.sigma2)
    if not all(math.isfinite(v) for v in values) or model.sigma2 <= 0:
        raise ValueError(f"model coefficients must be finite and sigma2 > 0, got {values}")
