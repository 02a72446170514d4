"""Several partners at once (``[[song.partner]]``, ``liveperf.modes.band``): the setlist's partner tables, exact
event lists in virtual time of two comps on two channels (stop with every voice of every partner sounding, a
partner's own mode switch and parameters), and three shipped partners through the real engine loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.modes.band import Band, Part
from liveperf.modes.build import SongModels, build_song
from liveperf.modes.comp import Comp
from liveperf.music.sampler import new_rng_state
from liveperf.setlist.schema import parse_setlist
from liveperf.setlist.fields import SetlistError
from tests.fakes import STEP_NS_120 as STEP, performer, run_engine
from tests.modes.test_comp import C3, C5, E4, G3, FakeComp, comp_settings

SONG = {"title": "Band", "tempo_bpm": 120, "key": "G major", "mode": "duet", "channel": 2, "seed": 5}


def parse(song: dict):
    return parse_setlist({"song": [song]}, Path("band.toml")).songs[0]


def test_partner_tables_take_the_song_s_fields_and_override_their_own():
    song = parse(SONG | {"partner": [{"name": "comp", "mode": "comp", "channel": 3, "comp_rhythm": "half_bar"},
                                     {"mode": "call_response", "channel": 4, "seed": 99, "temperature": 0.5}]})
    assert [(p.partner_name, p.mode, p.channel, p.seed, p.key.root, p.tempo_bpm) for p in song.partners] == [
        ("comp", "comp", 3, 15, 7, 120), ("call_response", "call_response", 4, 99, 7, 120)]
    assert song.partners[0].comp_rhythm == "half_bar" and song.partners[1].temperature == 0.5
    assert song.partners[0].temperature == song.temperature and not song.partners[0].partners
    assert parse(SONG).partners == ()  # one partner: as before


@pytest.mark.parametrize("partner, message", [
    ({"mode": "comp", "channel": 3, "tempo_bpm": 90}, r"partner 2: unknown or song-wide field\(s\) \['tempo_bpm'\]"),
    ({"mode": "comp", "channel": 2}, "partner 2: field 'channel' = 2: partner 1 plays on that channel"),
    ({"mode": "comp", "channel": 3, "comp_rhythm": "swing"}, "song 1 \\('Band'\\) partner 2: field 'comp_rhythm'"),
    ({"mode": "solo", "channel": 3}, "partner 2: field 'mode' = 'solo'"),
    ({"name": 3, "channel": 3}, "partner 2: field 'name' = 3"),
])
def test_a_bad_partner_table_is_named_with_its_field(partner, message):
    with pytest.raises(SetlistError, match=message):
        parse(SONG | {"partner": [partner]})
    with pytest.raises(SetlistError, match="field 'partner' must be"):
        parse(SONG | {"partner": {"mode": "comp"}})
    with pytest.raises(SetlistError, match="9 partners; at most 8"):
        parse(SONG | {"partner": [{"channel": c} for c in range(3, 11)]})


def two_comps(clock, sink, now_fn, chords=((C3, G3, E4), (45, 52, 60))):
    parts = []
    for k, chord in enumerate(chords):
        comp = Comp(comp_settings(channel=k), FakeComp(chord), clock, sink, new_rng_state(k), now_fn)
        parts.append(Part(f"comp {k + 1}", {"comp": comp}, "comp", (36, 84)))
    return Engine({"band": Band(parts, 16, clock)}, clock=clock, sink=sink, initial="band")


def on(at, ch, *pitches):
    return [(at, ("on", ch, p, 70)) for p in pitches]


def off(at, ch, *pitches):
    return [(at, ("off", ch, p)) for p in pitches]


def test_two_partners_play_the_same_beat_on_their_own_channels_and_both_stop():
    wire, engine, _ = run_engine(performer([(0, 30, C5, 80)]), two_comps, InternalClock(120, 4, 0), steps=3)
    assert wire == on(0, 0, C3, G3, E4) + on(0, 1, 45, 52, 60) + off(3 * STEP, 0, C3, G3, E4) + \
        off(3 * STEP, 1, 45, 52, 60)  # stop (song end, panic, song change): every voice of every partner lets go
    assert engine.mode.stats.tokens == 6 and engine.mode.chords == 2


def test_a_partner_s_parameters_and_mode_are_its_own():
    events = performer([(0, 15.9, C5, 80)])

    def requests(engine):
        assert engine.set_param("p2.partner_channel", 6, 2 * STEP)  # partner 2 moves; partner 1 stays
        assert not engine.set_param("p3.density", 0.5, 2 * STEP)  # no partner 3
        assert engine.set_param("p2.velocity", 40, 2 * STEP)

    wire, engine, _ = run_engine(events, two_comps, InternalClock(120, 4, 0), steps=6, requests=[(2, requests)])
    late = 4 * STEP + 30_000_000  # beat 2: both listened for a note that did not come
    assert wire == (on(0, 0, C3, G3, E4) + on(0, 1, 45, 52, 60) + off(2 * STEP, 1, 45, 52, 60)
                    + off(late, 0, C3, G3, E4) + on(late, 0, C3, G3, E4)
                    + [(late, ("on", 5, p, 40)) for p in (45, 52, 60)]
                    + off(6 * STEP, 0, C3, G3, E4) + off(6 * STEP, 5, 45, 52, 60))
    with pytest.raises(KeyError, match="partner 3: this song has partners 1..2"):
        engine.request_mode("comp", partner=3)
    with pytest.raises(KeyError, match="mode 'duet' is not available to partner 2"):
        engine.set_param("p2.mode", "duet", 0)


def test_three_shipped_partners_play_together_and_let_every_note_go():
    song = parse(SONG | {"key": "G major", "voice": "bass", "pitch_range": [40, 60],
                         "partner": [{"name": "comp", "mode": "comp", "channel": 3},
                                     {"name": "lead", "mode": "call_response", "channel": 4,
                                      "pitch_range": [67, 88]}]})
    models = SongModels.load(song, None)
    tune = [67, 71, 74, 72, 71, 69, 67, 66, 67, 69, 71, 72, 74, 72, 71, 67]
    events = performer([(4 * i, 4 * i + 3.9, p, 90) for i, p in enumerate(tune)])

    def factory(clock, sink, now_fn):
        modes, initial = build_song(song, models, clock, sink, seed=5, now_fn=now_fn)
        return Engine(modes, clock=clock, sink=sink, initial=initial)

    wire, engine, _ = run_engine(events, factory, InternalClock(120, 4, 0), steps=4 * len(tune) + 32)
    sounding: dict[int, set] = {1: set(), 2: set(), 3: set()}
    for _, m in wire:
        assert m[1] in sounding, m
        if m[0] == "on":
            assert m[2] not in sounding[m[1]]
            sounding[m[1]].add(m[2])
            assert len(sounding[m[1]]) <= (3 if m[1] == 2 else 1)  # the comp: 3 voices; the others: 1
        else:
            sounding[m[1]].discard(m[2])
    assert all(not s for s in sounding.values())
    played = {m[1] for _, m in wire if m[0] == "on"}
    assert played == {1, 2, 3}  # the bass duet, the comp and the call-and-response lead all played
    assert engine.mode.stats.model_errors == 0 and engine.mode_name == "duet"


def test_each_partner_s_mode_goes_out_on_osc_at_the_start_and_when_it_changes(tmp_path):
    """/liveperf/partner/mode i s: every partner at the song's start; at the bar line where partner 2's switch
    happens, partner 2 only (/liveperf/mode stays partner 1's)."""
    from liveperf.timing.scheduler import DiscardSink
    from liveperf.setlist.schema import load_setlist
    from liveperf.show.control import ShowController
    from tests.show.test_show_control import Feedback, Worker, write_setlist

    clock = InternalClock(120, 4, 0)
    engine = two_comps(clock, DiscardSink(), lambda: 0)
    engine.mode.parts[1].modes["duet"] = engine.mode.parts[1].modes["comp"]  # a second mode to switch to
    worker = Worker()
    ctl = ShowController(load_setlist(write_setlist(tmp_path)), [0], worker=worker, feedback=Feedback(),
                         log=lambda *_: None)
    ctl.bind(0, engine, clock, 0, 16)
    for step in range(17):
        if step == 5:
            engine.request_mode("duet", 2)
        ctl.on_step(step, clock.ns_at_step(step))
    sent = [(due, args) for due, name, args in worker.jobs if name == "partner_mode"]
    assert sent == [(0, (1, "comp")), (0, (2, "comp")), (16 * STEP, (2, "duet"))]
    assert [args for _, name, args in worker.jobs if name == "mode"] == [("comp",)]
