"""Record everything heard in a show, performer and partner, to a type-1 MIDI file.

``add(track, ts_ns, data)`` may be called from any thread (the engine thread records the performer, the scheduler
thread the partner at the moment each message really went out): it only enqueues. ``begin_song`` marks where a
song starts, with its tempo, so each song's notes land on its own bar grid in a DAW. ``save`` converts and writes
(mido) after the show. Conductor track: tempo changes and a marker per song; track 1 "performer"; track 2 "partner".
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from pathlib import Path

import mido

from liveperf.io.midi_file import track_from_events

TRACKS = ("performer", "partner")


@dataclass
class _SongMark:
    title: str
    tempo_bpm: float
    start_ns: int
    beats_per_bar: float


class Recorder:
    def __init__(self, ticks_per_beat: int = 960) -> None:
        self.ticks_per_beat = ticks_per_beat
        self._q: queue.SimpleQueue = queue.SimpleQueue()

    def begin_song(self, title: str, tempo_bpm: float, start_ns: int, beats_per_bar: float) -> None:
        self._q.put(_SongMark(title, tempo_bpm, start_ns, beats_per_bar))

    def add(self, track: str, ts_ns: int, data: bytes) -> None:
        self._q.put((track, ts_ns, bytes(data)))

    def _drain(self) -> list:
        items = []
        while True:
            try:
                items.append(self._q.get_nowait())
            except queue.Empty:
                return items

    def save(self, path: str | Path) -> Path:
        """Write the file (creating its folder); return its path. Events before the first song are dropped."""
        path = Path(path)
        tpb = self.ticks_per_beat
        conductor: list[tuple[int, mido.MetaMessage]] = []
        tracks: dict[str, list[tuple[int, int, mido.Message]]] = {t: [] for t in TRACKS}
        song: _SongMark | None = None
        song_tick0 = 0
        song_end_tick = 0
        seq = 0
        for item in self._drain():
            if isinstance(item, _SongMark):
                if song is not None:
                    # Next song starts on the bar after the last event of this one, plus one empty bar.
                    bar = int(round(song.beats_per_bar * tpb))
                    song_tick0 = ((song_end_tick - song_tick0) // bar + 2) * bar + song_tick0
                song = item
                song_end_tick = song_tick0
                conductor.append((song_tick0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(item.tempo_bpm))))
                conductor.append((song_tick0, mido.MetaMessage("marker", text=item.title)))
                continue
            if song is None:
                continue
            track, ts_ns, data = item
            rel = max(0, ts_ns - song.start_ns)
            tick = song_tick0 + int(round(rel * song.tempo_bpm * tpb / 60e9))
            try:
                msg = mido.Message.from_bytes(list(data))
            except ValueError:
                continue
            song_end_tick = max(song_end_tick, tick)
            seq += 1
            tracks[track].append((tick, seq, msg))
        mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
        mid.tracks.append(_track("conductor", [(t, i, m) for i, (t, m) in enumerate(conductor)]))
        for name in TRACKS:
            mid.tracks.append(_track(name, tracks[name]))
        path.parent.mkdir(parents=True, exist_ok=True)
        mid.save(path)
        return path


def _track(name: str, events: list) -> mido.MidiTrack:
    return track_from_events(events, [mido.MetaMessage("track_name", name=name, time=0)])
