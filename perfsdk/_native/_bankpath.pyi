"""Type stub for the compiled per-value path of the detector bank (_bankpath.pyx)."""

from typing import Any, Callable, Mapping, Sequence

from perfsdk.detect.anomaly import Anomaly

STEP_PYTHON: int
STEP_ZSCORE: int
STEP_PIPELINE: int

def stepping(det: Any, check_python: Callable[..., Any] | None = None) -> int: ...

class BankPath:
    _series: dict[str, Any]
    def observe(self, name: str, value: float, timestamp: Any = None, error: bool = False,
                context: Mapping[str, Any] | None = None) -> Sequence[Anomaly]: ...
