"""Numba array kernels: the batch engines, one file a domain, gathered here.

Each detector (and the Q-learner) keeps its whole state in one float64 array
laid out as ``layout`` says. The Cython objects in this package advance that
array one event at a time; the kernels advance the *same* array over a batch,
with the same floating-point operations in the same order, so the two engines
can be interleaved mid-stream and agree bit for bit (``tests/test_zscore.py``).

- ``kernels_zscore``: rolling-window and EWMA z-scores;
- ``kernels_arima``: one-step ARIMA forecasts, residual scale, replays;
- ``kernels_qlearn``: Q-learning steps, batches and simulated episodes;
- ``kernels_runs``: the run-confirmation rule over a batch of scores.

``kernels.X`` reaches any kernel or layout constant (``kernels.ZS_COUNT``).
"""

from perfsdk._native.kernels_arima import (
    arima_forecast_one, arima_layout, arima_replay, arima_update_many,
)
from perfsdk._native.kernels_qlearn import ql_act, ql_greedy, ql_learn, ql_learn_many, ql_random, ql_run_episodes
from perfsdk._native.kernels_runs import confirmed_runs
from perfsdk._native.kernels_zscore import zscore_new_state, zscore_update_many
from perfsdk._native.layout import *  # noqa: F401,F403 - the layout constants, for kernels.X

__all__ = [
    "arima_forecast_one", "confirmed_runs", "arima_layout", "arima_replay", "arima_update_many", "ql_act", "ql_greedy",
    "ql_learn", "ql_learn_many", "ql_random", "ql_run_episodes", "zscore_new_state", "zscore_update_many",
]
