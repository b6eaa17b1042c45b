"""Type stub for the compiled per-event alert-pipeline engine (_pipeline.pyx)."""

from typing import Any, Callable

import numpy as np

from perfsdk._native._state import StateOwner

LAYOUT: dict[str, int | float]

class PipelineCore(StateOwner):
    @property
    def last_base(self) -> float: ...
    @property
    def last_lo(self) -> float: ...
    @property
    def last_hi(self) -> float: ...
    @property
    def offsets(self) -> tuple[int, int, int]: ...
    def _attach(self, state: Any, update0: Callable[[float], float],
                update1: Callable[[float], float] | None) -> None: ...
    def update(self, x: float) -> float: ...
