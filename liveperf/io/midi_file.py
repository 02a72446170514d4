"""Standard MIDI files in and out, through mido.

- ``read_take``: a file's channel-voice messages merged across tracks, in absolute ticks (a performer take);
- ``take_to_notes``: those messages as grid ``Note``s (for tokenising);
- ``write_notes``: grid notes to a one-track file.

Errors name the file (``MidiFileError``). Plain functions; called from the engine-free edges (CLI, recorder, tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import mido

from liveperf.music.melody import DEFAULT_STEPS_PER_BEAT, Note, step_to_ticks, ticks_to_step


class MidiFileError(ValueError):
    """A MIDI file that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class TimedMessage:
    """A raw MIDI message (status byte first) at an absolute tick of its file."""

    tick: int
    data: tuple[int, ...]


@dataclass(frozen=True)
class Take:
    """A performer's part read from a file: channel-voice messages in tick order."""

    ticks_per_beat: int
    messages: tuple[TimedMessage, ...]

    @property
    def length_ticks(self) -> int:
        return self.messages[-1].tick if self.messages else 0


def read_take(path: str | Path) -> Take:
    """Read every channel-voice message (note, CC, program, pitch bend, ...) from ``path``, tracks merged."""
    path = Path(path)
    try:
        mid = mido.MidiFile(path)
    except FileNotFoundError:
        raise MidiFileError(f"{path}: no such file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise MidiFileError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    if mid.type == 2:
        raise MidiFileError(f"{path}: type 2 MIDI files (independent sequences) are not supported")
    if mid.ticks_per_beat <= 0:
        raise MidiFileError(f"{path}: SMPTE time division is not supported; use ticks per beat")
    out: list[TimedMessage] = []
    for order, track in enumerate(mid.tracks):
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.is_meta or msg.type in ("sysex",):
                continue
            out.append(TimedMessage(tick, tuple(msg.bytes())))
    # Stable by tick; at equal ticks note-offs first so a repeated pitch is released before it is struck again.
    out.sort(key=lambda m: (m.tick, 0 if _is_note_off(m.data) else 1))
    return Take(mid.ticks_per_beat, tuple(out))


def _is_note_off(data: tuple[int, ...]) -> bool:
    kind = data[0] & 0xF0
    return kind == 0x80 or (kind == 0x90 and len(data) > 2 and data[2] == 0)


def take_to_notes(take: Take, steps_per_beat: int = DEFAULT_STEPS_PER_BEAT) -> list[Note]:
    """Notes of a take on the step grid (all channels; unmatched note-ons end at the take's last tick)."""
    open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
    notes: list[Note] = []
    tpb = take.ticks_per_beat
    for m in take.messages:
        kind, ch = m.data[0] & 0xF0, m.data[0] & 0x0F
        if kind not in (0x80, 0x90):
            continue
        key = (ch, m.data[1])
        if _is_note_off(m.data):
            stack = open_notes.get(key)
            if stack:
                start, vel = stack.pop(0)
                notes.append(Note(ticks_to_step(start, tpb, steps_per_beat), ticks_to_step(m.tick, tpb, steps_per_beat),
                                  m.data[1], vel))
        else:
            open_notes.setdefault(key, []).append((m.tick, m.data[2]))
    end = take.length_ticks
    for (ch, pitch), stack in open_notes.items():
        for start, vel in stack:
            notes.append(Note(ticks_to_step(start, tpb, steps_per_beat), ticks_to_step(end, tpb, steps_per_beat), pitch, vel))
    return sorted(notes)


def write_notes(
    path: str | Path,
    notes: Iterable[Note],
    *,
    tempo_bpm: float = 120.0,
    steps_per_beat: int = DEFAULT_STEPS_PER_BEAT,
    ticks_per_beat: int = 480,
    channel: int = 0,
) -> None:
    """Write grid notes as a type-0 file at ``tempo_bpm``."""
    events: list[tuple[int, int, mido.Message]] = []
    for n in notes:
        start = step_to_ticks(n.start_step, ticks_per_beat, steps_per_beat)
        end = step_to_ticks(max(n.end_step, n.start_step + 1), ticks_per_beat, steps_per_beat)
        events.append((start, 1, mido.Message("note_on", channel=channel, note=n.pitch, velocity=max(1, n.velocity))))
        events.append((end, 0, mido.Message("note_off", channel=channel, note=n.pitch, velocity=0)))
    track = track_from_events(events, [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0)])
    mid = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    mid.tracks.append(track)
    try:
        mid.save(path)
    except OSError as exc:
        raise MidiFileError(f"{path}: cannot write ({exc})") from None


def track_from_events(events: Iterable[tuple[int, int, mido.Message]], head: list | None = None) -> mido.MidiTrack:
    """A track from ``(absolute tick, order, message)`` events: sorted by tick then order (e.g. note-offs before
    note-ons at the same tick), delta times filled in, ``head`` meta messages first, end-of-track last."""
    track = mido.MidiTrack(head or [])
    last = 0
    for tick, _order, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track
