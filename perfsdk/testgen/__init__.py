"""Load tests from real traffic: a traffic model learned from exported spans, scenarios as
data (``Scenario``, a published JSON Schema), an LLM hook that writes scenarios under
validation, and a runner that runs them with Locust in a subprocess.

The names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfsdk._runtime import lazy_names

if TYPE_CHECKING:
    from perfsdk.testgen.llm import (
        LLMError, LLMScenarioGenerator, ModelScenarioGenerator, ScenarioGenerator, ScenarioRejected,
    )
    from perfsdk.testgen.locust_runner import LoadTestError, LoadTestResult, locustfile_source, run_locust
    from perfsdk.testgen.model import TrafficModel
    from perfsdk.testgen.scenario import Limits, Scenario, ScenarioError

__getattr__, __dir__ = lazy_names(__name__, {
    "Limits": "perfsdk.testgen.scenario", "Scenario": "perfsdk.testgen.scenario",
    "ScenarioError": "perfsdk.testgen.scenario",
    "LLMError": "perfsdk.testgen.llm", "LLMScenarioGenerator": "perfsdk.testgen.llm",
    "ModelScenarioGenerator": "perfsdk.testgen.llm", "ScenarioGenerator": "perfsdk.testgen.llm",
    "ScenarioRejected": "perfsdk.testgen.llm",
    "LoadTestError": "perfsdk.testgen.locust_runner", "LoadTestResult": "perfsdk.testgen.locust_runner",
    "locustfile_source": "perfsdk.testgen.locust_runner", "run_locust": "perfsdk.testgen.locust_runner",
    "TrafficModel": "perfsdk.testgen.model",
})

__all__ = ["Limits", "Scenario", "ScenarioError",
           "LLMError", "LLMScenarioGenerator", "ModelScenarioGenerator", "ScenarioGenerator", "ScenarioRejected",
           "LoadTestError", "LoadTestResult", "locustfile_source", "run_locust", "TrafficModel"]
