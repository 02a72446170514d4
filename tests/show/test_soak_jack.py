"""Real-time soak through JACK, short form (the long form: ``python -m bench.soak_jack --minutes 10``).

`liveperf play` at 180 BPM with dense input and a mode change every 4 bars, watched by the wire monitor; SIGTERM
at the end. Loose bounds only (the benchmark prints the figures): no stuck note, no crash, memory flat.
"""

from __future__ import annotations

import pytest

from bench import soak_jack
from liveperf.models.onnx_model import shipped_models_dir

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "melody_dnn.onnx").exists(), reason="no shipped model")]


def test_short_real_time_soak(jack_server):  # the fixture only checks the JACK tools; the bench starts its own
    r = soak_jack.run(minutes=0.25, warmup_s=3, log=lambda line: None)  # 15 s: three modes (0.12 min saw one)
    print(soak_jack.format_result(r))
    assert not r["crashed"] and r["exit_code"] == 130, r["output_tail"]
    assert r["wire"]["note_ons"] > 10 and r["wire"]["stuck"] == [] and r["wire"]["unmatched_offs"] <= r["repair_offs"]
    assert r["wire"]["duplicate_ons"] == 0  # (notes over the cap: a wall-clock figure, the benchmark's)
    assert r["send_errors"] == 0 and r["switches"] >= 1
    assert r["rss_mib"]["growth_pct"] <= 5.0
