"""Which messages of a show were due on its grid: a note due on a step, or a reaction, due when it was computed (the
duet's correction when the performer's note of the step arrives, a harmony). For a reaction, send minus due is how
long it took to go out, not a grid error, so the timing benches measure the two apart."""

from __future__ import annotations

import numpy as np

GRID_TOLERANCE_NS = 1_000  # a due time this near a step is the step's (the report's step_ns is rounded)


def grid_step_ns(t_ns: np.ndarray, start_ns: int, step_ns: float) -> np.ndarray:
    """The grid step nearest each time (ns), as the song's report places its steps."""
    k = np.round((np.asarray(t_ns, dtype=np.int64) - start_ns) / step_ns)
    return start_ns + (k * step_ns).astype(np.int64)


def on_grid(due_ns, start_ns: int, step_ns: float) -> np.ndarray:
    """For each due time (ns): is it a step of the song's grid (True), or a reaction's (due when computed)?"""
    due = np.asarray(due_ns, dtype=np.int64)
    return np.abs(due - grid_step_ns(due, start_ns, step_ns)) <= GRID_TOLERANCE_NS
