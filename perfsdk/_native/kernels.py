"""Numba array kernels: the batch engines, one file a domain, gathered here -- lazily.

Each detector (and the Q-learner) keeps its whole state in one float64 array
laid out as ``layout`` says. The Cython objects in this package advance that
array one event at a time; the kernels advance the *same* array over a batch,
with the same floating-point operations in the same order, so the two engines
can be interleaved mid-stream and agree bit for bit (``tests/test_zscore.py``).

- ``kernels_zscore``: rolling-window and EWMA z-scores;
- ``kernels_arima``: one-step ARIMA forecasts, residual scale, replays;
- ``kernels_qlearn``: Q-learning steps, batches and simulated episodes;
- ``kernels_runs``: the run-confirmation rule over a batch of scores.

``kernels.X`` reaches any kernel or layout constant (``kernels.ZS_COUNT``). The
layout constants are here at once; a kernel's module -- and Numba with it, a
large import a host should not pay for unless it runs a batch -- is imported
the first time one of its kernels is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from perfsdk._native.layout import *  # noqa: F401,F403 - the layout constants, for kernels.X
from perfsdk._native.layout import arima_layout  # noqa: F401 - pure Python: no Numba needed

#: kernel name -> the module that defines it
_HOMES = {
    "arima_forecast_one": "kernels_arima", "arima_replay": "kernels_arima", "arima_update_many": "kernels_arima",
    "ql_act": "kernels_qlearn", "ql_greedy": "kernels_qlearn", "ql_learn": "kernels_qlearn",
    "ql_learn_many": "kernels_qlearn", "ql_random": "kernels_qlearn", "ql_run_episodes": "kernels_qlearn",
    "confirmed_runs": "kernels_runs", "zscore_update_many": "kernels_zscore",
    "pipeline_season_many": "kernels_pipeline", "pipeline_step_many": "kernels_pipeline",
    "pool_limit_aimd": "kernels_pool", "pool_limit_fixed": "kernels_pool", "pool_limit_gradient2": "kernels_pool",
    "pool_limit_queuepool": "kernels_pool", "pool_limit_sample": "kernels_pool", "pool_limit_vegas": "kernels_pool",
    "pool_sim_advance": "kernels_pool", "pool_sim_counts": "kernels_pool", "pool_sim_state": "kernels_pool",
}

__all__ = ["arima_layout", *sorted(_HOMES)]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"perfsdk._native.{home}"), name)
    globals()[name] = value  # found by plain lookup from now on
    return value
