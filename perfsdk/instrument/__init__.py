"""Instrumentation: init(), @monitor, the OTel span processor, resources, incidents."""

from perfsdk.instrument.bank import DetectorBank
from perfsdk.instrument.incidents import Incident
from perfsdk.instrument.decorator import monitor
from perfsdk.instrument.processor import PerfSpanProcessor
from perfsdk.instrument.sdk import PerfSDK, init

__all__ = ["DetectorBank", "Incident", "PerfSDK", "PerfSpanProcessor", "init", "monitor"]
