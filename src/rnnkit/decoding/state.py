"""Branching a batched protocol state: the rows (streams) to keep, in any order, repeated."""
from __future__ import annotations

import numpy as np


def select_state(state, rows: np.ndarray):
    """The given rows (streams) of a batched protocol state, as a new state; rows may repeat.

    A state is an object with a `select(rows)` method, an array with the batch first, or a
    tuple/list of states (a mixture's), or None.
    """
    if state is None:
        return None
    if hasattr(state, "select"):
        return state.select(rows)
    if isinstance(state, np.ndarray):
        return state[rows]
    if isinstance(state, (tuple, list)):
        return type(state)(select_state(s, rows) for s in state)
    raise TypeError(f"cannot select rows of a {type(state).__name__} state")
