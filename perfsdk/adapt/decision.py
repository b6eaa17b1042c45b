"""Decision: one explained move of an adaptive controller, whatever it sizes.

A controller (``perfsdk.adapt.controller``) decides keep, shrink or grow for
a target (a cache's capacity, a pool's size); a ``Decision`` records what the
interval looked like, the learner's state and Q-values, the reward, the value
before and after, whether it was applied, the guardrail that limited it, and
any second setting the target moved by its own rule (the cache's window).
``perfsdk.export.decision_row`` turns it into a row of the Arrow decisions table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Action", "Decision", "SettingMove"]


class Action(enum.IntEnum):
    """What a controller may do to its target's size (the learner's action index)."""

    KEEP = 0  # first: ties go to keep
    SHRINK = 1
    GROW = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class SettingMove:
    """A second setting, a share in [0, 1], that the target moves by its own rule.

    >>> print(SettingMove("window_share", "window", 0.01, 0.05, "ghosts of the window"))
    window 1.0% -> 5.0%: ghosts of the window
    """

    name: str  # its column in the decision's features (``<name>`` before, ``<name>_after``)
    label: str  # how an explanation names it
    before: float
    after: float
    reason: str | None = None  # None: no evidence either way
    limited: bool = False  # the rule wanted more than the setting may move: past its limits, or faster

    def __str__(self) -> str:
        return f"{self.label} {self.before:.1%} -> {self.after:.1%}: {self.reason}"


@dataclass(frozen=True)
class Decision:
    """One controller decision, explained.

    Attributes
    ----------
    target
        The name of what was sized (``AdaptiveCache(name=...)``).
    unit
        What the value counts (``"capacity"``, ``"connections"``).
    mode
        ``"auto"`` (applied within the limits) or ``"advisory"`` (recommended only).
    state, q_values
        The learner's discretised state and its Q-values there, one per ``Action``.
    features
        What the interval looked like (the learner's inputs and the what-if estimates).
    evidence
        The same in words.
    value_before, value_after
        The size before and the size decided (advisory: the recommendation).
    guardrail
        What limited the move, if anything (``max_capacity``, ``cooldown``, ...).
    setting
        The second setting's move, if the target has one.
    """

    timestamp: datetime
    target: str
    unit: str
    mode: str
    state: int
    features: dict[str, float]
    evidence: str
    action: Action
    q_values: tuple[float, ...]
    reward: float
    value_before: int
    value_after: int
    applied: bool
    guardrail: str | None
    setting: SettingMove | None = None

    def __str__(self) -> str:
        not_applied = "" if self.applied or self.mode == "auto" else f", not applied: {self.mode}"
        q = {str(Action(a)): round(v, 4) for a, v in enumerate(self.q_values)}
        text = (
            f"{self.target}: {self.action} ({self.unit} {self.value_before} -> {self.value_after}"
            f"{not_applied}) after an interval with {self.evidence}; reward {self.reward:.4f}; Q = {q}"
        )
        if self.guardrail:
            text += f"; limited by {self.guardrail}"
        if self.setting is not None and self.setting.reason:
            text += f"; {self.setting}"
        return text
