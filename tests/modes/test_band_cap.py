"""The three-partner JACK soak's song and performer (``bench.soak_jack``: partner 1 switching through all five
modes every 4 bars, a comp, a call-and-response lead, a dense performer) replayed in virtual time through the real
engine and the shipped models: no partner note outlives the note-length cap, and none is left sounding.

This replay found the duet's note whose cap fell on a listening step (it ended when the next step was computed:
8 notes of 16.9 steps against a 16-step cap in 10 minutes, the 1,409 ms notes of the JACK soak)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bench.soak_jack import BAND, SETLIST, performer_events
from liveperf.engine import Engine
from liveperf.loop import ScriptedInput, run_loop
from liveperf.modes.build import SongModels, build_song
from liveperf.modes.settings import settings_for
from liveperf.music.notes import is_note_off, is_note_on
from liveperf.setlist.schema import parse_setlist
from liveperf.timing.clock import InternalClock
from liveperf.timing.virtual_scheduler import VirtualScheduler

MINUTES = 2.0  # the first over-long note came after 61 s


def test_no_partner_note_outlives_the_cap_in_the_band_soak_song():
    song = parse_setlist(tomllib.loads(SETLIST + BAND), Path("soak.toml")).songs[0]
    models = SongModels.load(song, None)
    clock = InternalClock(song.tempo_bpm, models.steps_per_beat, 0)
    source = ScriptedInput(performer_events(MINUTES * 60))
    sched = VirtualScheduler(now_fn=source.now_ns)
    modes, initial = build_song(song, models, clock, sched, song.seed, now_fn=source.now_ns)
    engine = Engine(modes, clock=clock, sink=sched, initial=initial, mode_cc=song.mode_cc,
                    steps_per_bar=song.steps_per_bar(models.steps_per_beat), pitch_range=song.pitch_range)
    last = run_loop(engine, clock, source, lookahead_ns=8_000_000, stop_at_step=int(MINUTES * 60e9 / clock.step_ns),
                    stop_when_done=False)
    engine.stop(clock.ns_at_step(last))
    sched.close(clock.ns_at_step(last))
    cap_ns = settings_for(song, models.steps_per_beat).max_note_steps * clock.step_ns
    sounding, lengths = {}, []
    for t, data in sched.sent:
        key = (data[0] & 0x0F, data[1]) if len(data) == 3 else None
        if is_note_on(data):
            sounding.setdefault(key, t)
        elif is_note_off(data) and key in sounding:
            lengths.append((t - sounding.pop(key), key))
    assert not sounding
    assert len(lengths) > 1000 and {ch for _, (ch, _) in lengths} == {1, 2, 3}  # partner 1, the comp, the lead
    over = [(round(n / 1e6, 1), key) for n, key in lengths if n > cap_ns + 1000]
    assert over == []
    assert {name.split()[-1] for _, name in engine.mode.parts[0].switches} == {
        "call_response", "duet", "harmonize", "phrase", "comp"}
