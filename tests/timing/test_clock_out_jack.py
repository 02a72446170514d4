"""MIDI clock out through JACK, counted by an outside client (short form of ``python -m bench.clock_out_jack``):
a Song Select every 4 s changes the song (116 <-> 137 BPM) at the next bar line; SIGTERM at the end. Exact counts
(every tick the songs' length calls for arrives, one Start, one Stop, nothing after Stop); the timing figures are
the benchmark's to print."""

from __future__ import annotations

import pytest

from bench import clock_out_jack
from liveperf.models.onnx_model import shipped_models_dir

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="no shipped model")]


@pytest.mark.parametrize("backend", ["jack", "jack-rtmidi"])
def test_every_tick_reaches_an_outside_client_across_song_changes(jack_server, backend):
    # The fixture only checks the JACK tools; the bench starts its own (synchronous) server.
    r = clock_out_jack.run(minutes=0.25, change_s=4.0, backend=backend, log=lambda line: None)
    print(clock_out_jack.format_result(r))
    assert not r["crashed"] and r["exit_code"] == 130, r["output_tail"]
    assert r["songs_played"] >= 3, r  # two song changes at least
    w, c = r["wire"], r["liveperf"]
    assert (w["starts"], w["stops"], w["after_stop"]) == (1, 1, 0), w
    assert w["ticks"] == c["ticks_sent"] == c["ticks_expected"] > 0, (w, c)
