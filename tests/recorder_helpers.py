"""Helpers shared by the recorder's tests (``test_recorder``, ``test_recorder_errors``): MIDI bytes, reading a
recorder file back, polling."""

from __future__ import annotations

import time
from pathlib import Path

import mido

REPO = Path(__file__).resolve().parents[1]
BAR_120_NS = 2_000_000_000  # one 4/4 bar at 120 BPM
EIGHTH_120_NS = 250_000_000


def on(pitch: int, vel: int = 100, ch: int = 0) -> bytes:
    return bytes([0x90 | ch, pitch, vel])


def off(pitch: int, ch: int = 0) -> bytes:
    return bytes([0x80 | ch, pitch, 0])


def read_song_file(path: Path):
    """``(ticks_per_beat, conductor [(tick, type, value)], {track: [(tick, bytes)]})`` of a recorder file."""
    mid = mido.MidiFile(path)
    conductor, tracks = [], {}
    for i, track in enumerate(mid.tracks):
        tick, events = 0, []
        for msg in track:
            tick += msg.time
            if i == 0 and msg.type in ("set_tempo", "marker"):
                conductor.append((tick, msg.type, round(mido.tempo2bpm(msg.tempo), 3) if msg.type == "set_tempo"
                                  else msg.text))
            elif not msg.is_meta:
                events.append((tick, bytes(msg.bytes())))
        if i:
            tracks[track[0].name] = events
    assert mid.tracks[0][0].name == "conductor" and list(tracks) == ["performer", "partner"]
    return mid.ticks_per_beat, conductor, tracks


def wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()
