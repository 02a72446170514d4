"""liveperf's benchmarks. They live in the source tree, beside ``tests`` (whose JACK server helper they use) and
``setlists``, and find both from here, so they run from any directory (``REPO_ROOT``); they write only where
they are told (``--out``, ``--json``) or to a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def let_children_import_bench() -> None:
    """Put ``REPO_ROOT`` on ``PYTHONPATH`` for the child Pythons a bench starts (``-m bench.reaction_jack``,
    ``-m bench.reaction_probe``), which would otherwise find ``bench`` only when started in the repo root."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
