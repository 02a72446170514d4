"""Soak, short form in virtual time (the long form: ``python -m bench.soak --minutes 60``; see bench/soak.py).

Every shipped song in turn with the shipped models, random seeded performer input (garbage included), random mode
switches and tempo changes, through the real engine loop; the wire is checked as it streams.
"""

from __future__ import annotations

import pytest

from bench import soak
from liveperf.models.onnx_model import shipped_models_dir

pytestmark = pytest.mark.skipif(not (shipped_models_dir() / "melody_dnn.onnx").exists(), reason="no shipped model")


@pytest.mark.parametrize("seed", [2])
def test_virtual_soak_every_song_every_mode(seed):
    r = soak.run(minutes=4, seed=seed, segment_minutes=0.5, log=lambda line: None)
    print(soak.format_result(r))
    assert r.songs_played == 8 and r.mode_switches > 10 and r.tempo_changes > 0
    assert r.wire["note_ons"] > 100 and r.input_ignored > 0
    assert r.wire["stuck_at_end"] == 0 and r.stuck_after_song == 0
    assert r.wire["unmatched_offs"] == 0 and r.wire["time_reversals"] == 0
    assert r.model_errors == 0
    assert r.rss_growth_pct <= 5.0


def test_streaming_wire_flags_what_it_must():
    w = soak.StreamingWire()
    for item in [(0, b"\x90\x3c\x40"), (5, b"\x80\x3d\x00"), (4, b"\x90\x3e\x40"), (9, b"\x90\x3c\x00")]:
        w.append(item)
    assert (w.unmatched_offs, w.time_reversals, sorted(w.sounding), w.longest_note_ns) == (1, 1, [(0, 0x3e)], 9)
