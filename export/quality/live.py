"""The live code path in virtual time: a setlist song, its shipped models, the engine, the modes and the scheduler,
exactly as ``liveperf play`` builds them (``build_modes``, ``Engine``, ``run_loop``), fed with a performer part made
from a held-out tune, recorded off the (virtual) wire.

Nothing here re-implements a mode: the masks, resets, step-late feeding, note caps and density are the show's own.
Only the clock is virtual (``ScriptedInput`` + ``VirtualScheduler``, as in the tests), so a harness run is
deterministic for a seed and takes seconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.music.copy_guard import CopyIndex
from liveperf.engine import Engine
from liveperf.loop import ScriptedInput, run_loop
from liveperf.modes.build import SongModels, build_modes, key_follower
from liveperf.music.notes import note_off, note_on
from liveperf.setlist.schema import Song, parse_setlist
from liveperf.timing.virtual_scheduler import VirtualScheduler

PC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
PERFORMER_CHANNEL = 0
RELEASE_EARLY_NS = 1_000_000  # the performer lets go of a key 1 ms before the next step (detached, not legato)


def key_name(tonic_pc: int, mode: str) -> str:
    return f"{PC_NAMES[tonic_pc % 12]} {mode or 'major'}"


def make_song(**fields) -> Song:
    """A setlist song through the setlist's own parser (so every default is the show's)."""
    raw = {"song": [{"title": "harness", "tempo_bpm": 120, **fields}]}
    return parse_setlist(raw, Path("harness.toml")).songs[0]


def chorale_duet_song(meta, bass: np.ndarray, seed: int, **fields) -> Song:
    """The duet song a held-out chorale is played as: its key and meter (4/4 when unknown), the partner as the bass,
    the range of Bach's bass (``bass``: its tokens) widened by a tone each way."""
    pitches = bass[bass >= melody.PITCH_OFFSET] - melody.PITCH_OFFSET
    num, den = meta.meter
    meter = f"{num}/{den}" if meta.meter_known and den in (2, 4, 8, 16) else "4/4"
    return make_song(key=key_name(meta.tonic_pc, meta.mode), meter=meter, mode="duet", voice="bass", seed=seed,
                     pitch_range=[int(pitches.min()) - 2, int(pitches.max()) + 2], **fields)


def first_bar_line(meta, steps_per_bar: int) -> int:
    """The song step where a chorale starts so that its first bar line falls on one of the song's."""
    return (-meta.downbeat_step) % steps_per_bar


def performer_events(tokens: np.ndarray, start_step: int, step_ns: int, velocity: int = 90, jitter_ns: int = 0,
                     rng: np.random.Generator | None = None) -> list[tuple[int, bytes]]:
    """Timed note-on/off messages for a token line placed at song step ``start_step``. Each note ends 1 ms before
    the next step (or the next note-on, if that comes earlier). ``jitter_ns``: a human performer's timing, each
    note-on moved by a normal draw of that standard deviation (from ``rng``), at most 3 of them and less than half
    a step either way."""
    notes = melody.tokens_to_notes(tokens, offset_step=start_step)
    onsets = [n.start_step * step_ns for n in notes]
    if jitter_ns and notes:
        bound = min(3 * jitter_ns, step_ns // 2 - 1)
        onsets = [t + int(np.clip(rng.normal(0.0, jitter_ns), -bound, bound)) for t in onsets]
    events = []
    for i, n in enumerate(notes):
        end = n.end_step * step_ns - RELEASE_EARLY_NS
        if i + 1 < len(notes):
            end = min(end, onsets[i + 1] - RELEASE_EARLY_NS)
        events.append((onsets[i], note_on(PERFORMER_CHANNEL, n.pitch, velocity)))
        events.append((max(end, onsets[i] + RELEASE_EARLY_NS), note_off(PERFORMER_CHANNEL, n.pitch)))
    return events


def onset_delays_ns(performer: list[tuple[int, bytes]], sent: list[tuple[int, bytes]], channel: int,
                    step_ns: int) -> np.ndarray:
    """For each partner note-on on ``channel`` whose nearest step has a performer note-on: partner time minus
    performer time (ns; negative: the partner was first)."""
    struck = {}
    for ns, data in performer:
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            struck.setdefault(int(round(ns / step_ns)), ns)
    out = []
    for ns, data in sent:
        if len(data) == 3 and data[0] == 0x90 | channel and data[2] > 0:
            at = struck.get(int(round(ns / step_ns)))
            if at is not None:
                out.append(ns - at)
    return np.array(out, dtype=np.int64)


@dataclass
class Played:
    """One virtual show: what went out on the partner's channel, as a token line from song step 0."""

    partner: np.ndarray  # tokens, ``steps`` long
    sent: list[tuple[int, bytes]]  # the whole wire (ns, bytes)
    engine: Engine
    step_ns: int


def wire_tokens(sent: list[tuple[int, bytes]], channel: int, step_ns: int, steps: int) -> np.ndarray:
    """The partner's note messages on ``channel`` as a monophonic token line (last event in a step wins)."""
    toks = np.zeros(steps, dtype=np.int64)
    sounding = None
    for ns, data in sent:
        if len(data) < 3 or data[0] & 0x0F != channel or data[0] & 0xE0 != 0x80:
            continue
        step = int(round(ns / step_ns))
        if not 0 <= step < steps:
            continue
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            toks[step] = melody.on(data[1])
            sounding = data[1]
        elif data[1] == sounding:
            if toks[step] == melody.HOLD:
                toks[step] = melody.OFF
            sounding = None
    return toks


@functools.lru_cache(maxsize=1)
def _shipped_copies() -> CopyIndex:
    return CopyIndex.load()


def play(song: Song, models: SongModels, events: list[tuple[int, bytes]], steps: int,
         lookahead_ns: int = 8_000_000, max_copy_bars: int = 2) -> Played:
    """Run ``song`` (its starting mode) for ``steps`` steps in virtual time with ``events`` as the performer, with
    the shipped copy guard at ``max_copy_bars`` as a show plays by default (0: without it)."""
    spb = models.steps_per_beat
    clock = InternalClock(song.tempo_bpm, spb, 0)
    source = ScriptedInput(events)
    sched = VirtualScheduler(now_fn=source.now_ns)
    copies = _shipped_copies() if max_copy_bars else None
    modes = build_modes(song, models, clock, sched, song.seed, now_fn=source.now_ns, copies=copies,
                        max_copy_bars=max_copy_bars)
    bar = song.steps_per_bar(spb)
    engine = Engine(modes, clock=clock, sink=sched, initial=song.mode, trigger_cc=song.trigger_cc,
                    echo_guard=None, steps_per_bar=bar, keys=key_follower(song, bar, spb), pitch_range=song.pitch_range,
                    key_every_steps=spb if song.key_change_at == "beat" else bar, key_escape_steps=spb)
    last = run_loop(engine, clock, source, lookahead_ns=lookahead_ns, stop_at_step=steps, stop_when_done=False)
    end = clock.ns_at_step(last)
    engine.stop(end)
    sched.close(end)
    step_ns = clock.ns_at_step(1) - clock.ns_at_step(0)
    return Played(wire_tokens(sched.sent, song.channel - 1, step_ns, steps), list(sched.sent), engine, step_ns)
