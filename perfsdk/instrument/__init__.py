"""Instrumentation: init(), @monitor, the OTel span processor, resources, incidents.

The names load on first use: ``@monitor`` alone needs only OpenTelemetry's
API, not its SDK, numpy or the detectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfsdk._runtime import lazy_names

if TYPE_CHECKING:
    from perfsdk.instrument.bank import DetectorBank
    from perfsdk.instrument.decorator import monitor
    from perfsdk.instrument.incidents import Incident
    from perfsdk.instrument.processor import PerfSpanProcessor
    from perfsdk.instrument.sdk import PerfSDK, init

__getattr__, __dir__ = lazy_names(__name__, {
    "DetectorBank": "perfsdk.instrument.bank", "Incident": "perfsdk.instrument.incidents",
    "monitor": "perfsdk.instrument.decorator", "PerfSpanProcessor": "perfsdk.instrument.processor",
    "PerfSDK": "perfsdk.instrument.sdk", "init": "perfsdk.instrument.sdk",
})

__all__ = ["DetectorBank", "Incident", "PerfSDK", "PerfSpanProcessor", "init", "monitor"]
