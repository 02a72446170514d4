"""A song's recording as an append-only journal, its conversion to MIDI, and recovery after a crash.

Journal format (ASCII, one record a line, every line ends with ``\\n``):

- line 1, the header: ``liveperf-journal 1 {"title": ..., "tempo_bpm": 120.0, "start_ns": ..., "beats_per_bar": 4.0,
  "ticks_per_beat": 960}`` (JSON);
- ``performer|partner TS_NS HEXBYTES``: a raw MIDI message heard at monotonic ``TS_NS``;
- ``tempo NS BPM``: the tempo changes to ``BPM`` at monotonic ``NS``;
- ``key NS NAME``: the partner's key becomes ``NAME`` (spaces written as ``_``: ``E_dorian``) at monotonic ``NS``.

A reader keeps only complete lines: a last line without ``\\n`` (the process was killed mid-write) is dropped, and a
line that does not parse is skipped and counted (``SongRecord.skipped_lines``). Only the header is required.

MIDI layout (``song_midi``, and ``show_midi`` for a whole show in one file): type 1; track 0 "conductor" with the
tempo and a marker holding the title (and at each key change a marker ``key E dorian``, plus a key signature where
one fits: major and minor keys), tracks 1 "performer" and 2 "partner". Ticks come from nanoseconds through the
song's tempo map (``TempoMap``), so a note recorded at a grid time lands on that grid's exact tick.

``recover(folder)`` turns every leftover ``*.journal`` into its ``.mid``; the notes still sounding where a journal
stops (the process was killed) end there. Plain functions and data; no threads.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mido

from liveperf.io.midi_file import track_from_events

TRACKS = ("performer", "partner")
MAGIC = b"liveperf-journal 1 "
JOURNAL_SUFFIX = ".journal"
RECOVERED_SUFFIX = ".journal.recovered"
TMP_SUFFIX = ".tmp"
MIN_TEMPO_BPM = 60e6 / 0xFFFFFF  # a MIDI file's slowest tempo (about 3.58 BPM): 2**24 - 1 microseconds a beat


def check_tempo(tempo_bpm: float) -> bool:
    """True when ``tempo_bpm`` can be written to a MIDI file."""
    return MIN_TEMPO_BPM <= tempo_bpm < math.inf


class JournalError(ValueError):
    """A journal that cannot be read (no or bad header); the message names the file."""


@dataclass
class SongRecord:
    """Everything recorded for one song. Times are monotonic ns; ``events`` are ``(track, ts_ns, bytes)`` in
    arrival order; ``tempos`` are ``(ns, bpm)`` changes. Owned by whoever built it (the recorder's writer thread, or
    ``read_journal``'s caller)."""

    title: str
    tempo_bpm: float
    start_ns: int
    beats_per_bar: float
    ticks_per_beat: int = 960
    events: list[tuple[str, int, bytes]] = field(default_factory=list)
    tempos: list[tuple[int, float]] = field(default_factory=list)
    keys: list[tuple[int, str]] = field(default_factory=list)  # (ns, key name) where the partner's key changed
    skipped_lines: int = 0  # truncated or corrupt lines a reader dropped; 0 when built in memory

    def tempo_map(self) -> TempoMap:
        return TempoMap(self.start_ns, self.tempo_bpm, self.ticks_per_beat, self.tempos)


# ---- names ----

def slugify(title: str) -> str:
    """``"Blue Moon (live)"`` -> ``"blue-moon-live"``: lower-case ASCII letters and digits joined by ``-``."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")
    return slug or "song"


def song_stem(number: int, title: str) -> str:
    """The file stem of a show's ``number``-th song (1-based): ``"03-blue-moon"``."""
    return f"{number:02d}-{slugify(title)}"


def next_song_number(folder: Path) -> int:
    """1 + the highest ``NN`` of ``NN-...`` files in ``folder`` (1 when there are none or it cannot be read), so a
    show recording into a folder again never overwrites an earlier song."""
    try:
        numbers = [int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"(\d+)-", p.name))]
    except OSError:
        return 1
    return max(numbers, default=0) + 1


# ---- writing lines ----

def header_line(song: SongRecord) -> bytes:
    fields = {"title": song.title, "tempo_bpm": song.tempo_bpm, "start_ns": song.start_ns,
              "beats_per_bar": song.beats_per_bar, "ticks_per_beat": song.ticks_per_beat}
    return MAGIC + json.dumps(fields, ensure_ascii=True).encode("ascii") + b"\n"


def event_line(track: str, ts_ns: int, data: bytes) -> bytes:
    return f"{track} {ts_ns} {data.hex()}\n".encode("ascii")


def tempo_line(ns: int, tempo_bpm: float) -> bytes:
    return f"tempo {ns} {tempo_bpm!r}\n".encode("ascii")


def key_line(ns: int, name: str) -> bytes:
    return f"key {ns} {'_'.join(name.split())}\n".encode("ascii", "replace")


def journal_bytes(song: SongRecord) -> bytes:
    """The whole journal of ``song`` as it is in memory (used to rewrite a journal after a write error)."""
    parts = [header_line(song)]
    parts += [tempo_line(ns, bpm) for ns, bpm in song.tempos]
    parts += [key_line(ns, name) for ns, name in song.keys]
    parts += [event_line(t, ts, d) for t, ts, d in song.events]
    return b"".join(parts)


# ---- reading ----

def read_journal(path: str | Path) -> SongRecord:
    """Read a journal. Raises ``JournalError`` (naming the file) when the header is missing or bad, OSError when
    the file cannot be read; tolerates a truncated last line and skips (counts) lines that do not parse."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    if not complete:
        raise JournalError(f"{path}: no complete header line")
    song = _parse_header(path, complete[0])
    song.skipped_lines = 1 if tail else 0
    for line in complete[1:]:
        if not _parse_line(song, line):
            song.skipped_lines += 1
    return song


def _parse_header(path: Path, line: bytes) -> SongRecord:
    if not line.startswith(MAGIC):
        raise JournalError(f"{path}: line 1 is not a liveperf journal header (want {MAGIC.decode().strip()!r})")
    try:
        h = json.loads(line[len(MAGIC):])
        song = SongRecord(str(h["title"]), float(h["tempo_bpm"]), int(h["start_ns"]), float(h["beats_per_bar"]),
                          int(h["ticks_per_beat"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise JournalError(f"{path}: bad header ({type(exc).__name__}: {exc}); want title, tempo_bpm, start_ns, "
                           f"beats_per_bar, ticks_per_beat") from None
    if not (check_tempo(song.tempo_bpm) and song.beats_per_bar > 0 and song.ticks_per_beat > 0):
        raise JournalError(f"{path}: bad header: want tempo_bpm >= {MIN_TEMPO_BPM:.2f}, beats_per_bar > 0 and "
                           f"ticks_per_beat > 0")
    return song


def _parse_line(song: SongRecord, line: bytes) -> bool:
    parts = line.split(b" ")
    if len(parts) != 3:
        return False
    kind = parts[0].decode("ascii", "replace")
    try:
        if kind in TRACKS:
            data = bytes.fromhex(parts[2].decode("ascii"))
            if not data:
                return False
            song.events.append((kind, int(parts[1]), data))
            return True
        if kind == "tempo":
            bpm = float(parts[2])
            if not check_tempo(bpm):
                return False
            song.tempos.append((int(parts[1]), bpm))
            return True
        if kind == "key":
            song.keys.append((int(parts[1]), parts[2].decode("ascii").replace("_", " ")))
            return True
    except (ValueError, UnicodeDecodeError):
        return False
    return False


# ---- time ----

class TempoMap:
    """Monotonic ns -> ticks of one song: tick 0 at ``start_ns``, piecewise-constant tempo. A change at or before
    ``start_ns`` sets the starting tempo. Times before ``start_ns`` map to tick 0."""

    def __init__(self, start_ns: int, tempo_bpm: float, ticks_per_beat: int,
                 changes: list[tuple[int, float]] = ()) -> None:
        self.start_ns = start_ns
        self.ticks_per_beat = ticks_per_beat
        self.changes = sorted(changes)
        # segments: (ns, exact tick at ns, bpm from ns on)
        self.segments = [(start_ns, 0.0, tempo_bpm)]
        for ns, bpm in self.changes:
            if ns <= start_ns:
                self.segments[0] = (start_ns, 0.0, bpm)
                continue
            s_ns, s_tick, s_bpm = self.segments[-1]
            self.segments.append((ns, s_tick + (ns - s_ns) * s_bpm * ticks_per_beat / 60e9, bpm))
        self._seg_ns = [s[0] for s in self.segments]

    def ticks_exact(self, ns: int) -> float:
        if ns <= self.start_ns:
            return 0.0
        s_ns, s_tick, s_bpm = self.segments[bisect.bisect_right(self._seg_ns, ns) - 1]
        return s_tick + (ns - s_ns) * s_bpm * self.ticks_per_beat / 60e9

    def tick(self, ns: int) -> int:
        """The nearest tick of monotonic ``ns``."""
        return int(round(self.ticks_exact(ns)))

    def ns_at(self, ticks: float) -> int:
        """The first monotonic ns at or after exact tick position ``ticks`` (>= 0)."""
        i = bisect.bisect_right([s[1] for s in self.segments], ticks) - 1
        s_ns, s_tick, s_bpm = self.segments[max(i, 0)]
        return s_ns + math.ceil((ticks - s_tick) * 60e9 / (s_bpm * self.ticks_per_beat))


# ---- MIDI ----

def song_events(song: SongRecord, tick0: int = 0):
    """``(conductor, tracks, end_tick)`` of ``song`` placed at ``tick0``: conductor ``(tick, order, meta)``; tracks
    ``{name: [(tick, order, message)]}`` in arrival order at equal ticks; ``end_tick`` the last event's tick (at least
    ``tick0``). Bytes that are not one valid MIDI message are dropped."""
    tmap = song.tempo_map()
    conductor = [(tick0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tmap.segments[0][2]))),
                 (tick0, 1, mido.MetaMessage("marker", text=song.title))]
    for i, (ns, _tick, bpm) in enumerate(tmap.segments[1:]):
        conductor.append((tick0 + tmap.tick(ns), 2 + i, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
    for i, (ns, name) in enumerate(song.keys):
        tick = tick0 + tmap.tick(ns)
        conductor.append((tick, 1000 + 2 * i, mido.MetaMessage("marker", text=f"key {name}")))
        signature = _key_signature(name)
        if signature is not None:
            conductor.append((tick, 1001 + 2 * i, signature))
    tracks: dict[str, list] = {t: [] for t in TRACKS}
    end_tick = tick0
    for seq, (track, ts_ns, data) in enumerate(song.events):
        try:
            msg = mido.Message.from_bytes(list(data))
        except ValueError:
            continue
        tick = tick0 + tmap.tick(ts_ns)
        end_tick = max(end_tick, tick)
        tracks[track].append((tick, seq, msg))
    return conductor, tracks, end_tick


def _key_signature(name: str):
    """A MIDI key signature for "G major" / "F# minor" / "E harmonic_minor"; None for the modes (no signature
    names them) and anything MIDI cannot spell."""
    parts = name.split()
    if len(parts) != 2 or parts[1] not in ("major", "minor", "harmonic_minor", "melodic_minor"):
        return None
    try:
        return mido.MetaMessage("key_signature", key=parts[0] + ("" if parts[1] == "major" else "m"))
    except (ValueError, KeyError):
        return None


def close_open_notes(song: SongRecord) -> int:
    """Append a note-off, at the last event's time, for every note still sounding at the end of ``song`` (a journal
    cut short by a kill ends with the notes that were sounding then); returns how many. One note-off ends a pitch
    however many note-ons came before it, as on the wire."""
    sounding: dict[tuple[str, int, int], None] = {}
    last_ns = song.start_ns
    for track, ts_ns, data in song.events:
        last_ns = max(last_ns, ts_ns)
        if len(data) == 3 and data[0] & 0xE0 == 0x80:
            key = (track, data[0] & 0x0F, data[1])
            if data[0] & 0xF0 == 0x90 and data[2] > 0:
                sounding[key] = None
            else:
                sounding.pop(key, None)
    for track, channel, pitch in sounding:
        song.events.append((track, last_ns, bytes((0x80 | channel, pitch, 0))))
    return len(sounding)


def song_midi(song: SongRecord) -> mido.MidiFile:
    """One song as a type-1 file (conductor, performer, partner), the song's start at tick 0."""
    return show_midi([song], song.ticks_per_beat)


def show_midi(songs: list[SongRecord], ticks_per_beat: int) -> mido.MidiFile:
    """Several songs in one type-1 file: each next song starts on the bar after the previous one's last event, plus
    one empty bar (the recorder's whole-show layout)."""
    conductor: list = []
    tracks: dict[str, list] = {t: [] for t in TRACKS}
    tick0 = end_tick = 0
    prev: SongRecord | None = None
    for song in songs:
        if prev is not None:
            bar = int(round(prev.beats_per_bar * ticks_per_beat))
            tick0 = ((end_tick - tick0) // bar + 2) * bar + tick0
        c, t, end_tick = song_events(song, tick0)
        conductor += c
        for name in TRACKS:
            tracks[name] += t[name]
        prev = song
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    mid.tracks.append(_track("conductor", [(tick, i, m) for i, (tick, _o, m) in enumerate(conductor)]))
    for name in TRACKS:
        mid.tracks.append(_track(name, [(tick, i, m) for i, (tick, _o, m) in enumerate(tracks[name])]))
    return mid


def _track(name: str, events: list) -> mido.MidiTrack:
    return track_from_events(events, [mido.MetaMessage("track_name", name=name, time=0)])


# ---- files ----

def fsync_dir(folder: Path) -> None:
    """Make a rename or new file in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_midi_atomic(mid: mido.MidiFile, path: Path, opener: Callable = open) -> None:
    """Write ``mid`` to ``path.tmp``, fsync it, rename it over ``path``: ``path`` is either the old file or the
    whole new one, never half. Raises OSError (the temporary file is removed)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with opener(tmp, "wb") as f:
            mid.save(file=f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def open_journal_atomic(song: SongRecord, path: Path, opener: Callable = open):
    """Write ``song``'s whole journal to ``path.tmp``, fsync it, rename it over ``path``, and return the file still
    open for appending (the caller owns it). Raises OSError (the temporary file is closed and removed)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    f = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = opener(tmp, "wb")
        f.write(journal_bytes(song))
        f.flush()
        os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError:
        if f is not None:
            close_quietly(f)
        unlink_quietly(tmp)
        raise
    return f


def default_fallback_dirs() -> list[Path]:
    """Where a recording goes at close when its folder cannot take it (see ``liveperf.io.recorder``): only
    ``$LIVEPERF_FALLBACK_DIR`` when it is set, else the temporary folder, /dev/shm and home."""
    chosen = os.environ.get("LIVEPERF_FALLBACK_DIR", "")
    dirs = [chosen] if chosen else [tempfile.gettempdir(), "/dev/shm", str(Path.home())]
    return [Path(d) / "liveperf-recordings" for d in dirs]


def recordable(data: bytes) -> bool:
    """A complete channel message, or a whole sysex: what a standard MIDI file track can hold."""
    if not data:
        return False
    status = data[0]
    if 0x80 <= status < 0xF0:
        want = 2 if status & 0xE0 == 0xC0 else 3
        return len(data) == want and all(b < 0x80 for b in data[1:])
    return status == 0xF0 and len(data) >= 2 and data[-1] == 0xF7 and all(b < 0x80 for b in data[1:-1])


def close_quietly(f) -> None:
    """Close ``f``; closing after a write error flushes again and fails again, and that error is already counted."""
    try:
        f.close()
    except OSError:
        pass


def unlink_quietly(path: Path) -> None:
    """Remove ``path`` if it is there; for cleanup while another error is being handled (ignores OSError)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:  # cleanup after an error already being raised
        pass


class RecoverError(OSError):
    """Some journals could not be converted; ``failures`` holds ``(journal path, reason)``."""

    def __init__(self, failures: list[tuple[Path, str]]) -> None:
        super().__init__("; ".join(f"{p}: {why}" for p, why in failures))
        self.failures = failures


def recover(folder: str | Path, on_error: Callable[[Path, str], None] | None = None) -> list[Path]:
    """Convert every leftover ``NN-title.journal`` in ``folder`` into ``NN-title.mid``; return the files written.

    Call it when no recorder is writing to ``folder`` (on start-up, or from the CLI): it also deletes leftover
    ``*.journal.tmp``/``*.mid.tmp`` files, which are half-written by definition. A journal whose ``.mid`` already
    exists (the recorder wrote it, then died before removing the journal) keeps that ``.mid``, which the recorder
    wrote from memory and so holds at least as much. Either way the journal is then renamed ``*.journal.recovered``
    (kept as evidence; never read again, so recover is idempotent). A journal that cannot be read or converted is
    left in place and reported through ``on_error(path, reason)``, or, without ``on_error``, by raising
    ``RecoverError`` after every other journal has been converted. A missing folder has nothing to recover.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    for tmp in [*folder.glob(f"*{JOURNAL_SUFFIX}{TMP_SUFFIX}"), *folder.glob(f"*.mid{TMP_SUFFIX}")]:
        unlink_quietly(tmp)
    written: list[Path] = []
    failures: list[tuple[Path, str]] = []
    for journal in sorted(folder.glob(f"*{JOURNAL_SUFFIX}")):
        mid_path = journal.with_suffix(".mid")
        try:
            if not mid_path.exists():
                song = read_journal(journal)
                close_open_notes(song)  # the notes sounding at the kill end where the recovered part ends
                save_midi_atomic(song_midi(song), mid_path)
                written.append(mid_path)
            os.replace(journal, journal.with_name(journal.stem + RECOVERED_SUFFIX))
        except (OSError, JournalError) as exc:
            failures.append((journal, str(exc)))
    for journal, why in failures:
        if on_error is not None:
            on_error(journal, why)
    if failures and on_error is None:
        raise RecoverError(failures)
    return written
