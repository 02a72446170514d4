"""Show control: song changes at bar lines (exact event lists in virtual time), Program Change / Bank Select /
Song Select, parameters from OSC and mapped CCs (with glides), MIDI learn written back into the setlist."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.io.osc_protocol import Command
from liveperf.loop import ScriptedInput, run_loop
from liveperf.music.melody import OFF, on
from liveperf.modes.duet import Duet
from liveperf.music.notes import control_change, describe
from liveperf.music.sampler import new_rng_state
from liveperf.timing.virtual_scheduler import VirtualScheduler
from liveperf.setlist.schema import load_setlist
from liveperf.setlist.write import store_cc_mappings
from liveperf.show.control import ShowController
from tests.fakes import STEP_NS_120 as S
from tests.fakes import ScriptedDuet, settings

SETLIST = """\
# The club set. Comments must survive MIDI learn.
[show]
name = "Club"

[[song]]
title = "Opener"
tempo_bpm = 120
key = "C major"
mode = "duet"

[[song]]
title = "Slow one"
tempo_bpm = 90
key = "A minor"
mode = "duet"
{extra2}

[[song]]
title = "Closer"
tempo_bpm = 140
key = "E minor"
{extra3}
"""


def write_setlist(tmp_path: Path, extra2: str = "", extra3: str = "", show: str = "") -> Path:
    p = tmp_path / "club.toml"
    text = SETLIST.format(extra2=extra2, extra3=extra3)
    if show:
        text = text.replace('name = "Club"\n', 'name = "Club"\n' + show)
    p.write_text(text)
    return p


class Worker:
    """Runs the controller's worker jobs at once, in order (the real TimedWorker is tested on its own)."""

    def __init__(self):
        self.jobs: list[tuple[int, str, tuple]] = []

    def at(self, due_ns, fn, *args):
        self.jobs.append((due_ns, getattr(fn, "__name__", str(fn)), args))
        fn(*args)

    def now(self, fn, *args):
        self.at(0, fn, *args)


class Feedback:
    """Stands in for OscFeedback (tested on real sockets in test_osc_feedback.py): its methods do nothing, named as called."""

    def __getattr__(self, name):
        def send(*args):
            pass
        send.__name__ = name
        return send


def duet(script, channel=1):
    def make(clock, sink):
        mode = Duet(settings(channel=channel), ScriptedDuet(script), clock, sink, new_rng_state(0))
        return Engine({"duet": mode, "phrase": mode}, clock=clock, sink=sink, initial="duet")
    return make


def play_set(setlist, songs, events, lookahead_ns=8_000_000, max_steps=48, first_song_steps=64):
    """Play songs as the show does, in virtual time: each song's loop stops at the bar line after a song request,
    the old song's notes end exactly there, the requested song starts at that bar line on its own tempo.
    ``songs``: setlist index -> engine factory(clock, sink); the first song stops after ``first_song_steps`` unless
    a request comes first, the others after ``max_steps``. Returns (wire, controller, [(song, start, end)])."""
    source = ScriptedInput(events)
    sched = VirtualScheduler(now_fn=source.now_ns)
    ctl = ShowController(setlist, list(range(len(setlist.songs))), worker=Worker(), feedback=Feedback(),
                         log=lambda *_: None)
    index, start_ns, played = 0, 0, []
    while index is not None:
        song = setlist.songs[index]
        clock = InternalClock(song.tempo_bpm, 4, start_ns)
        engine = songs[index](clock, sched)
        ctl.bind(index, engine, clock, start_ns, 16)
        limit = first_song_steps if not played else max_steps
        last = run_loop(engine, clock, source, lookahead_ns=lookahead_ns, stop_at_step=limit,
                        stop_when_done=False, stop_at_bar=lambda: ctl.pending_song is not None,
                        on_control=ctl.on_command, on_input=ctl.on_midi, on_step=ctl.on_step)
        end_ns = max(source.now_ns(), clock.ns_at_step(last))
        engine.stop(end_ns)
        played.append((index, start_ns, end_ns))
        if ctl.pending_song is None:
            break
        index, start_ns = ctl.pending_song, end_ns
    sched.close(end_ns)
    return [(t, describe(d)) for t, d in sched.sent], ctl, played


def test_osc_next_song_switches_at_the_next_bar_line_with_the_note_ended_there(tmp_path):
    sl = load_setlist(write_setlist(tmp_path))
    # Song 1 holds C3 from step 10; "next" arrives at step 12.5; the switch is at the bar line (step 16), where the
    # held note ends; song 2 (90 BPM, its own grid from that bar line) plays A3 on its step 2.
    events = [(int(12.5 * S), Command("song_next"))]
    songs = {0: duet({11: on(48)}), 1: duet({3: on(57), 6: OFF})}
    wire, ctl, played = play_set(sl, songs, events, max_steps=8)
    bar = 16 * S
    s90 = 60e9 / 90 / 4  # one 16th at 90 BPM
    assert played[0] == (0, 0, bar)
    assert played[1][0] == 1 and played[1][1] == bar
    assert wire == [
        (10 * S, ("on", 1, 48, 90)),
        (bar, ("off", 1, 48)),
        (bar + round(2 * s90), ("on", 1, 57, 90)),
        (bar + round(5 * s90), ("off", 1, 57)),
    ]
    assert ctl.stats.song_requests == 1 and ctl.current == 1


def test_program_change_selects_by_number_and_later_requests_win(tmp_path):
    sl = load_setlist(write_setlist(tmp_path))
    # Program 3 (wire value 2) at step 3, then Song Select 2 (wire value 1) at step 5: the later one wins, at step 16.
    events = [(3 * S, bytes((0xC0, 2))), (5 * S, bytes((0xF3, 1)))]
    songs = {0: duet({}), 1: duet({}), 2: duet({})}
    _, ctl, played = play_set(sl, songs, events, max_steps=4)
    assert [p[0] for p in played] == [0, 1] and played[1][1] == 16 * S
    assert ctl.stats.program_changes == 1


def test_bank_select_and_select_program_pick_the_song(tmp_path):
    sl = load_setlist(write_setlist(tmp_path, extra2="select_program = 10\nselect_bank = 2",
                                    extra3="select_program = 10"))
    ctl = ShowController(sl, [0, 1, 2], log=lambda *_: None)
    assert ctl.on_midi(0, control_change(0, 0, 0)) and ctl.on_midi(0, control_change(0, 32, 2))  # bank 2
    assert ctl.on_midi(0, bytes((0xC0, 9))) and ctl.pending_song == 1
    ctl.on_midi(0, control_change(0, 0, 1))  # bank 128: only the song with no bank asked for matches
    ctl.on_midi(0, bytes((0xC0, 9)))
    assert ctl.pending_song == 2
    ctl.pending_song = None
    ctl.on_midi(0, bytes((0xC0, 4)))  # no song answers program 5
    assert ctl.pending_song is None and ctl.stats.refused == 1
    assert not ctl.on_midi(0, bytes((0x90, 60, 100)))  # notes are for the engine


def test_program_change_ignored_when_the_setlist_says_so(tmp_path):
    sl = load_setlist(write_setlist(tmp_path, show='program_change = "ignore"\n'))
    ctl = ShowController(sl, [0, 1, 2], log=lambda *_: None)
    assert ctl.on_midi(0, bytes((0xC0, 1))) and ctl.pending_song is None


def test_a_burst_of_junk_program_changes_prints_a_few_lines_and_counts_them_all(tmp_path):
    sl = load_setlist(write_setlist(tmp_path))
    lines = []
    ctl = ShowController(sl, [0, 1, 2], log=lines.append)
    for program in range(20, 120):  # garbage: 100 Program Changes no song answers
        ctl.on_midi(0, bytes((0xC0, program)))
    assert ctl.stats.refused == 100
    assert lines == [f"control: Program Change {p}: no such song" for p in (21, 22, 23)]
    ctl.flush_log()
    assert lines[3:] == ["control: 97 more lines like 'control: Program Change #: no such song' not printed"]


def test_repeat_limiter_windows():
    from liveperf.show.log_limit import RepeatLimiter
    lim = RepeatLimiter(burst=2, window_s=10.0)
    got = [lim.line(f"song {n}: no such song", t) for n, t in ((1, 0.0), (2, 1.0), (3, 2.0), (4, 3.0), (5, 12.0))]
    assert got == ["song 1: no such song", "song 2: no such song", None, None,
                   "song 5: no such song (2 more like it not printed)"]
    assert lim.line("another kind", 12.5) == "another kind" and lim.flush() == []


def test_next_prev_select_and_their_refusals(tmp_path):
    sl = load_setlist(write_setlist(tmp_path))
    ctl = ShowController(sl, [0, 2], log=lambda *_: None)  # the set plays songs 1 and 3
    ctl.current = 0
    ctl.on_command(0, Command("song_next"))
    assert ctl.pending_song == 2
    ctl.on_command(0, Command("song_prev"))
    assert ctl.stats.refused == 1  # nothing before the first song of the set
    ctl.on_command(0, Command("song_select", "slow"))
    assert ctl.pending_song == 1  # any song of the setlist by title
    ctl.on_command(0, Command("song_select", 9))
    assert ctl.pending_song == 1 and ctl.stats.refused == 2
    ctl.current = 2
    ctl.on_command(0, Command("song_next"))
    assert ctl.stats.refused == 3


def test_params_from_osc_apply_to_every_mode_and_glide(tmp_path):
    sl = load_setlist(write_setlist(tmp_path))
    clock = InternalClock(120, 4, 0)
    sched = VirtualScheduler()
    engine = duet({})(clock, sched)
    ctl = ShowController(sl, [0, 1, 2], worker=Worker(), feedback=Feedback(), log=lambda *_: None)
    ctl.bind(0, engine, clock, 0, 16)
    assert ctl.params.value("temperature", 0) == 1.0  # the song's value (setlist default) is where glides start
    ctl.on_command(0, Command("param", ("top_k", 12)))
    assert engine.mode.s.top_k == 12  # ints jump
    ctl.on_command(0, Command("param", ("temperature", 0.5)))  # floats glide over 100 ms
    assert engine.mode.s.temperature == 0.0  # as built: nothing applied before the first step
    ctl.on_step(0, 50_000_000)
    assert engine.mode.s.temperature == pytest.approx(0.75)
    ctl.on_step(1, 100_000_000)
    assert engine.mode.s.temperature == 0.5
    ctl.on_command(0, Command("param", ("response_bars", 3)))
    assert engine.mode.s.response_steps == 48
    ctl.on_command(0, Command("param", ("partner_channel", 5)))
    assert engine.mode.s.channel == 4 and engine.mode.voice.channel == 4
    ctl.on_command(0, Command("param", ("mode", "phrase")))
    assert engine._pending_mode == "phrase"  # at the next bar line
    ctl.on_command(0, Command("param", ("mode", "harmonize")))  # a mode this engine was not given: refused
    assert ctl.stats.refused == 1


def test_midi_learn_maps_a_knob_and_stores_it_in_the_setlist(tmp_path):
    path = write_setlist(tmp_path)
    sl = load_setlist(path)
    clock = InternalClock(120, 4, 0)
    engine = duet({})(clock, VirtualScheduler())
    ctl = ShowController(sl, [0, 1, 2], worker=Worker(), feedback=Feedback(), log=lambda *_: None,
                         on_learned=lambda mappings: store_cc_mappings(path, mappings))
    ctl.bind(0, engine, clock, 0, 16)
    assert not ctl.on_midi(0, control_change(2, 74, 64))  # not mapped yet: the engine gets it
    ctl.on_command(0, Command("learn", "top_k"))
    assert ctl.on_midi(0, control_change(2, 74, 127))  # learned and applied at once
    assert engine.mode.s.top_k == 129
    assert ctl.on_midi(0, control_change(2, 74, 0)) and engine.mode.s.top_k == 0
    text = path.read_text()
    assert text.startswith("# The club set. Comments must survive MIDI learn.")
    assert tomllib.loads(text)["show"]["cc"] == [{"param": "top_k", "channel": 3, "cc": 74}]
    assert load_setlist(path).cc == ({"param": "top_k", "channel": 3, "cc": 74},)
    # The next show reads the mapping back: the knob works without learning again.
    ctl2 = ShowController(load_setlist(path), [0], worker=Worker(), feedback=Feedback(), log=lambda *_: None)
    engine2 = duet({})(clock, VirtualScheduler())
    ctl2.bind(0, engine2, clock, 0, 16)
    assert ctl2.on_midi(0, control_change(2, 74, 127)) and engine2.mode.s.top_k == 129


def test_store_cc_mappings_keeps_other_tables_and_refuses_a_bad_mapping(tmp_path):
    path = write_setlist(tmp_path, show='[show.osc]\nudp_port = 0\n')
    store_cc_mappings(path, [{"param": "sigma", "channel": 1, "cc": 1}, {"param": "mode", "channel": 16, "cc": 20}])
    sl = load_setlist(path)
    assert sl.osc.udp_port == 0 and len(sl.cc) == 2 and sl.name == "Club"
    before = path.read_text()
    with pytest.raises(Exception):
        store_cc_mappings(path, [{"param": "nope", "channel": 1, "cc": 1}])
    assert path.read_text() == before  # a refused write leaves the file as it was


def test_panic_and_stop_commands(tmp_path):
    sl = load_setlist(write_setlist(tmp_path))
    clock = InternalClock(120, 4, 0)
    sched = VirtualScheduler()
    engine = duet({1: on(48)})(clock, sched)
    calls = []
    ctl = ShowController(sl, [0], worker=Worker(), feedback=Feedback(), log=lambda *_: None,
                         on_panic=lambda ts: calls.append(("panic", ts)), on_stop=lambda: calls.append("stop"))
    ctl.bind(0, engine, clock, 0, 16)
    engine.on_step(0)
    ctl.on_command(3 * S, Command("panic"))
    ctl.on_command(4 * S, Command("stop"))
    sched.close(5 * S)
    assert [(t, describe(d)) for t, d in sched.sent] == [(0, ("on", 1, 48, 90)), (3 * S, ("off", 1, 48))]
    assert calls == [("panic", 3 * S), "stop"]


def test_beat_feedback_is_due_on_the_beat(tmp_path):
    sl = load_setlist(write_setlist(tmp_path))
    worker = Worker()
    ctl = ShowController(sl, [0], worker=worker, feedback=Feedback(), log=lambda *_: None)
    clock = InternalClock(120, 4, 1_000)
    ctl.bind(0, duet({})(clock, VirtualScheduler()), clock, 1_000, 16)
    worker.jobs.clear()
    for step in range(20):
        ctl.on_step(step, clock.ns_at_step(step))
    beats = [(t, args) for t, name, args in worker.jobs if name == "beat"]
    assert beats == [(clock.ns_at_step(4 * k), (1 + k // 4, 1 + k % 4)) for k in range(5)]


def test_chord_feedback_when_the_held_chord_changes(tmp_path):
    """/liveperf/chord goes out at the step the performer's chord changes: kept through a single note and a rest,
    the sustain pedal holding released notes in it; a new song sends its first chord again."""
    sl = load_setlist(write_setlist(tmp_path))
    worker = Worker()
    ctl = ShowController(sl, [0], worker=worker, feedback=Feedback(), log=lambda *_: None)
    clock = InternalClock(120, 4, 0)
    engine = duet({})(clock, VirtualScheduler())
    ctl.bind(0, engine, clock, 0, 16)
    worker.jobs.clear()

    def keys(kind, *pitches):
        return [bytes([kind, p, 100 if kind == 0x90 else 0]) for p in pitches]

    play = {
        1: keys(0x90, 48, 64, 67),                    # C E G, C in the bass
        3: keys(0x90, 72),                            # a doubled root: the same chord
        5: keys(0x80, 64) + keys(0x90, 63),           # E -> Eb: C minor
        6: keys(0x80, 48, 63, 67, 72),                # every key up: the chord stays
        8: keys(0x90, 62),                            # one note: no chord of its own
        9: keys(0x80, 62) + [control_change(0, 64, 127)] + keys(0x90, 53, 57, 60),  # pedal down, F A C
        10: keys(0x80, 53, 57, 60) + keys(0x90, 62),  # keys up under the pedal, D: D F A C, F in the bass
        12: [control_change(0, 64, 0)],               # pedal up: only D sounds, the chord stays
    }
    for step in range(14):
        for msg in play.get(step, []):
            engine.on_input(clock.ns_at_step(step) - 1_000_000, msg)
        ctl.on_step(step, clock.ns_at_step(step))
        engine.on_step(step)
    chords = [(t, args) for t, name, args in worker.jobs if name == "chord"]
    assert chords == [(clock.ns_at_step(1), ("C", 0, "major")), (clock.ns_at_step(5), ("Cm", 0, "minor")),
                      (clock.ns_at_step(9), ("F", 5, "major")), (clock.ns_at_step(10), ("Dm7/F", 2, "minor"))]
    assert engine.chords.changes == 4
    worker.jobs.clear()
    fresh = duet({})(clock, VirtualScheduler())
    ctl.bind(0, fresh, clock, 0, 16)
    for msg in keys(0x90, 50, 53, 57, 60):
        fresh.on_input(clock.ns_at_step(20) - 1_000_000, msg)
    ctl.on_step(20, clock.ns_at_step(20))
    assert [args for _, name, args in worker.jobs if name == "chord"] == [("Dm7", 2, "minor")]


def test_key_feedback_at_the_bar_line_the_key_moves(tmp_path):
    """/liveperf/key goes out at the bar line where the partner's key changes (the follower is asked before the
    step, so the message is due with it), with its confidence; nothing while the key holds."""
    from liveperf.music.key_finder import FOLLOW_AUTO, KeyFinder, KeyFollower
    from liveperf.music.scales import parse_key
    from tests.music.test_key_finder import template_model

    sl = load_setlist(write_setlist(tmp_path))
    worker = Worker()
    ctl = ShowController(sl, [0], worker=worker, feedback=Feedback(), log=lambda *_: None)
    clock = InternalClock(120, 4, 0)
    sink = VirtualScheduler()
    keys = KeyFollower(KeyFinder(template_model(), 16, 4), parse_key("C major"), **FOLLOW_AUTO)
    mode = Duet(settings(channel=1), ScriptedDuet({}), clock, sink, new_rng_state(0))
    engine = Engine({"duet": mode}, clock=clock, sink=sink, keys=keys, pitch_range=(48, 84))
    ctl.bind(0, engine, clock, 0, 16)
    worker.jobs.clear()
    scale = (67, 69, 71, 72, 74, 76, 78, 79)  # G major, one note every other step through bar 1
    for step in range(20):
        if step < 16 and step % 2 == 0:
            if step:
                engine.on_input(clock.ns_at_step(step) + 1_000_000, bytes([0x80, scale[step // 2 - 1], 0]))
            engine.on_input(clock.ns_at_step(step) + 1_000_000, bytes([0x90, scale[step // 2], 90]))
        ctl.on_step(step, clock.ns_at_step(step))
        engine.on_step(step)
    sent = [(t, args) for t, name, args in worker.jobs if name == "key"]
    assert [(t, args[0]) for t, args in sent] == [(0, "C major"), (clock.ns_at_step(16), "G major")]
    assert sent[1][1][1] >= FOLLOW_AUTO["enter"] and engine.key_changes == [(16, "G major")]
