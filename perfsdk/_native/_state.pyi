"""Type stub for the compiled engines' shared base (_state.pyx)."""

import numpy as np

class StateOwner:
    @property
    def state(self) -> np.ndarray: ...
    def _bind(self, state: np.ndarray) -> None: ...
