"""The figures file every training command writes (``export/results/<model>.json``, committed, small)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def write_results(path: Path, files: dict, *, training_data, split, metrics, training: dict, t_start: float) -> None:
    """Stamp the run's total minutes into ``training`` (the ONNX metadata was written before: it keeps the training
    minutes only) and write ``files`` + data, split, metrics and training as JSON to ``path``."""
    training["minutes_total"] = round((time.perf_counter() - t_start) / 60, 2)
    results = {**files, "training_data": training_data, "split": split, "metrics": metrics, "training": training}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
