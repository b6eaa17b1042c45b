"""Type stub for the compiled per-event Q-learner engine (_qlearn.pyx)."""

from perfsdk._native._state import StateOwner

LAYOUT: dict[str, int | float]

class QCore(StateOwner):
    def act(self, state: int) -> int: ...
    def greedy(self, state: int) -> int: ...
    def learn(self, state: int, action: int, reward: float, next_state: int, done: bool = False) -> None: ...
