"""Record everything heard in a show, performer and partner: per-song MIDI files that survive a crash, and/or one
whole-show type-1 file.

Threads. ``add(track, ts_ns, data)`` may be called from any thread (the engine thread records the performer, the
scheduler thread the partner at the moment each message really went out); ``begin_song``, ``end_song``, ``bar`` and
``tempo_change`` too. They only enqueue: no file I/O, no lock, never a write error. Everything else happens on the
recorder's own writer thread (folder mode) or in ``save`` (memory-only mode).

Folder mode, ``Recorder(folder=...)``: song N gets ``NN-<slug-title>.mid`` (``NN`` continues after the highest number
already in the folder, so nothing is overwritten). While it plays, the writer appends each event to
``NN-<slug>.journal`` (format: ``liveperf.io.journal``) and flushes + fsyncs it ``sync_delay_ns`` after every bar
line (bar lines come from the song's start, tempo and beats per bar, tempo changes, and explicit ``bar(ns)`` calls),
so after ``kill -9`` or a power cut every event before the last synced bar line is on disk
(``liveperf.io.journal.recover`` turns it into the ``.mid``). At the song's end (``end_song``, the next
``begin_song``, or ``close``) the ``.mid`` is written atomically from memory and the journal removed.

Write errors (disk full, I/O error, folder gone) never reach the caller: they are counted in ``stats``, the events
stay in memory, and the writer tries again (journal: rewritten whole at the next bar line; ``.mid``: at the next song
boundary, ``sync`` and ``close``). ``healthy`` says whether the recording is currently safe on disk; ``on_error``
hears each change from healthy to failing.

At ``close``, a song whose ``.mid`` still cannot be written (the disk is still full) is written to the first of
``fallback_dirs`` that takes it (by default ``$LIVEPERF_FALLBACK_DIR`` if set, else the system's temporary folder,
/dev/shm and the home folder, each under ``liveperf-recordings/``: another file system, most likely) and ``on_error`` says where
(``stats.fallback_paths``); the in-memory copy is never lost at exit while any of them has room.

Whole-show file: ``save(path)`` writes every song recorded so far, in memory or folder mode, in the layout of
``liveperf.io.journal.show_midi``.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from liveperf.io import journal as jr

TRACKS = jr.TRACKS


@dataclass
class RecorderStats:
    """Counters of the writer (written by it, read from any thread)."""

    events: int = 0  # events recorded into a song (events before the first song are dropped)
    songs: int = 0
    syncs: int = 0  # journal flush + fsync that succeeded
    durable_ns: int = 0  # last bar line (monotonic ns) whose sync succeeded; events before it are on disk
    write_errors: int = 0  # OSErrors from open/write/flush/fsync/rename, all files
    last_error: str = ""
    paths: list[Path] = field(default_factory=list)  # per-song .mid files written, in song order
    fallback_paths: list[Path] = field(default_factory=list)  # .mid files written elsewhere at close (disk full)


@dataclass
class _SongMark:
    title: str
    tempo_bpm: float
    start_ns: int
    beats_per_bar: float


@dataclass
class _Control:
    kind: str  # "end_song" | "bar" | "tempo" | "key" | "sync" | "close"
    ns: int = 0
    bpm: float = 0.0
    text: str = ""
    done: threading.Event | None = None


@dataclass
class _Song:
    """A song's record and its files; owned by the writer thread (or ``save`` in memory-only mode)."""

    record: jr.SongRecord
    stem: str = ""
    journal: object = None  # open journal file (folder mode), None when closed or broken
    open: bool = True  # still receiving events as the current song
    mid_ok: bool = False  # the .mid on disk holds every event in ``record``


class Recorder:
    def __init__(self, ticks_per_beat: int = 960, *, folder: str | Path | None = None,
                 sync_delay_ns: int = 50_000_000, opener: Callable = open,
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 on_error: Callable[[str], None] | None = None,
                 fallback_dirs: list[Path] | None = None) -> None:
        """``folder``: per-song files and journals go there (created if missing); None keeps everything in memory
        for ``save``. ``sync_delay_ns``: how long after a bar line the journal is synced, so messages stamped just
        before the line (enqueued a little later) are in it. ``opener(path, mode)``: opens the journal and ``.mid``
        files (tests inject failing files). ``clock_ns``: monotonic ns, same clock as the ``ts_ns`` given to ``add``.
        ``on_error(message)`` is called on the writer thread when the recording stops being safe on disk; it must
        not block."""
        self.ticks_per_beat = ticks_per_beat
        self.unrecordable = 0  # messages ``add`` refused (not storable in a MIDI file)
        self.folder = None if folder is None else Path(folder)
        self.sync_delay_ns = sync_delay_ns
        self.stats = RecorderStats()
        self._opener = opener
        self._clock_ns = clock_ns
        self._on_error = on_error
        self.fallback_dirs = jr.default_fallback_dirs() if fallback_dirs is None else list(fallback_dirs)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _songs between the writer and save
        self._songs: list[_Song] = []
        self._problems: set[str] = set()  # what is not safe on disk now, e.g. {"journal 03-intro", "mid 02-blues"}
        self._next_number = 0  # 0: not scanned yet
        self._next_bar_ns: int | None = None
        self._bar_marks: list[int] = []
        self._thread: threading.Thread | None = None
        if self.folder is not None:
            self._thread = threading.Thread(target=self._run, name="liveperf-recorder", daemon=True)
            self._thread.start()

    # ---- any thread: enqueue only ----
    def begin_song(self, title: str, tempo_bpm: float, start_ns: int, beats_per_bar: float) -> None:
        """A new song starts at monotonic ``start_ns`` (tick 0 of its file); ends the previous one."""
        if not (jr.check_tempo(tempo_bpm) and beats_per_bar > 0):
            raise ValueError(f"begin_song({title!r}): want tempo_bpm >= {jr.MIN_TEMPO_BPM:.2f} and beats_per_bar > 0, "
                             f"got {tempo_bpm}, {beats_per_bar}")
        self._q.put(_SongMark(title, tempo_bpm, start_ns, beats_per_bar))

    def add(self, track: str, ts_ns: int, data: bytes) -> None:
        """Record raw MIDI ``data`` on ``track`` ("performer" or "partner") at monotonic ``ts_ns``. Only what a MIDI
        file can hold is kept (channel messages, whole sysex); anything else (a stray System Reset, clock, a
        malformed message) is counted in ``unrecordable`` and dropped here, so it can never stop the writer."""
        if track not in TRACKS:
            raise ValueError(f"recorder track {track!r}: want one of {TRACKS}")
        data = bytes(data)
        if not jr.recordable(data):
            self.unrecordable += 1  # a plain counter: a lost increment between two threads is harmless
            return
        self._q.put((track, ts_ns, data))

    def end_song(self) -> None:
        """The current song is over: write its ``.mid``. Events added later still reach it (the file is rewritten at
        the next song boundary, ``sync`` or ``close``)."""
        self._q.put(_Control("end_song"))

    def bar(self, ns: int) -> None:
        """A bar line at monotonic ``ns`` (from an external clock): sync the journal once it has passed."""
        self._q.put(_Control("bar", ns=ns))

    def tempo_change(self, ns: int, tempo_bpm: float) -> None:
        """The current song's tempo becomes ``tempo_bpm`` at monotonic ``ns`` (ticks and bar lines follow)."""
        if not jr.check_tempo(tempo_bpm):
            raise ValueError(f"tempo_change: want tempo_bpm >= {jr.MIN_TEMPO_BPM:.2f}, got {tempo_bpm}")
        self._q.put(_Control("tempo", ns=ns, bpm=tempo_bpm))

    def key_change(self, ns: int, name: str) -> None:
        """The partner's key becomes ``name`` ("G major") at monotonic ``ns``: a marker (and a key signature where
        one fits) in the song's file."""
        self._q.put(_Control("key", ns=ns, text=str(name)))

    # ---- caller's thread, blocking ----
    def sync(self, timeout_s: float = 5.0) -> bool:
        """Folder mode: wait until everything added so far is in the journal and fsynced, and failed ``.mid`` files
        were retried. Returns ``healthy`` (False on timeout too)."""
        if self._thread is None or not self._thread.is_alive():
            return self.healthy
        done = threading.Event()
        self._q.put(_Control("sync", done=done))
        return done.wait(timeout_s) and self.healthy

    def close(self, timeout_s: float = 10.0) -> bool:
        """End the current song, write every ``.mid`` not yet written, stop the writer. Returns ``healthy``.
        Safe to call twice; ``save`` still works afterwards (events added after ``close`` reach only ``save``)."""
        if self._thread is not None and self._thread.is_alive():
            self._q.put(_Control("close"))
            self._thread.join(timeout_s)
        return self.healthy and not (self._thread is not None and self._thread.is_alive())

    @property
    def healthy(self) -> bool:
        """True while nothing recorded is waiting for a failed write (read from any thread)."""
        return not self._problems

    def save(self, path: str | Path) -> Path:
        """Write every song recorded so far to one type-1 file (creating its folder); return its path.
        Events before the first song are dropped. Raises OSError (also counted in ``stats``)."""
        path = Path(path)
        if self._thread is not None and self._thread.is_alive():
            self.sync()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._apply_all(self._drain())
            mid = jr.show_midi([s.record for s in self._songs], self.ticks_per_beat)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            mid.save(path)
        except OSError as exc:
            self._count_error(f"{path}: {exc}")
            raise
        return path

    # ---- writer thread (or save, in memory-only mode) ----
    def _drain(self) -> list:
        items = []
        while True:
            try:
                items.append(self._q.get_nowait())
            except queue.Empty:
                return items

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                item = self._wait_item()
                with self._lock:
                    items = ([] if item is None else [item]) + self._drain()
                    stop = self._apply_all(items)
        except BaseException as exc:  # a bug: say so where the show looks, then let the thread die loudly
            self._fail("writer", f"recorder writer stopped: {type(exc).__name__}: {exc}")
            raise

    def _wait_item(self):
        due = self._due_ns()
        if due is None:
            return self._q.get()
        wait_s = (due - self._clock_ns()) / 1e9
        try:
            return self._q.get(timeout=wait_s) if wait_s > 0 else self._q.get_nowait()
        except queue.Empty:
            return None

    def _due_ns(self) -> int | None:
        points = [p for p in (self._next_bar_ns, min(self._bar_marks, default=None)) if p is not None]
        return min(points) + self.sync_delay_ns if points else None

    def _apply_all(self, items: list) -> bool:
        """Apply queued items in order, then sync where due; True when ``close`` was among them."""
        stop, boundary, waiters = False, False, []
        for item in items:
            if isinstance(item, tuple):
                self._add_event(*item)
            elif isinstance(item, _SongMark):
                self._finish_song()
                self._start_song(item)
                boundary = True
            elif item.kind == "end_song":
                self._finish_song()
                boundary = True
            elif item.kind == "tempo":
                self._change_tempo(item.ns, item.bpm)
            elif item.kind == "key":
                self._mark_key(item.ns, item.text)
            elif item.kind == "bar":
                if self.folder is not None:
                    self._bar_marks.append(item.ns)
            elif item.kind == "sync":
                waiters.append(item.done)
            elif item.kind == "close":
                stop = True
        if self.folder is not None:
            if stop:
                self._finish_song()
            self._sync_if_due(force=bool(waiters))
            if waiters or stop or boundary:
                self._write_pending_mids()
            if stop:
                self._write_fallbacks()
        for done in waiters:
            done.set()
        return stop

    def _current(self) -> _Song | None:
        return self._songs[-1] if self._songs and self._songs[-1].open else None

    def _start_song(self, mark: _SongMark) -> None:
        song = _Song(jr.SongRecord(mark.title, mark.tempo_bpm, mark.start_ns, mark.beats_per_bar,
                                   self.ticks_per_beat))
        self._songs.append(song)
        self.stats.songs += 1
        if self.folder is None:
            return
        if not self._next_number:
            self._next_number = jr.next_song_number(self.folder)
        song.stem = jr.song_stem(self._next_number, mark.title)
        self._next_number += 1
        self._open_journal(song)
        self._bar_marks.clear()
        self._plan_next_bar(song, mark.start_ns)

    def _add_event(self, track: str, ts_ns: int, data: bytes) -> None:
        if not self._songs:
            return
        song = self._songs[-1]
        song.record.events.append((track, ts_ns, data))
        self.stats.events += 1
        if not song.open:
            song.mid_ok = False  # a late event after end_song: the .mid is rewritten at the next boundary
        elif song.journal is not None:
            self._journal_write(song, jr.event_line(track, ts_ns, data))

    def _change_tempo(self, ns: int, tempo_bpm: float) -> None:
        song = self._current()
        if song is None:
            return
        song.record.tempos.append((ns, tempo_bpm))
        if song.journal is not None:
            self._journal_write(song, jr.tempo_line(ns, tempo_bpm))
        if self.folder is not None:
            after_ns = self._clock_ns() - self.sync_delay_ns
            if self._next_bar_ns is not None:
                after_ns = min(after_ns, self._next_bar_ns - 1)  # a bar line already due still gets its sync
            self._plan_next_bar(song, after_ns)

    def _mark_key(self, ns: int, name: str) -> None:
        song = self._current()
        if song is None:
            return
        song.record.keys.append((ns, name))
        if song.journal is not None:
            self._journal_write(song, jr.key_line(ns, name))

    def _plan_next_bar(self, song: _Song, after_ns: int) -> None:
        """The first bar line after monotonic ``after_ns`` (the song's own start counts as bar line 0)."""
        tmap = song.record.tempo_map()
        bar_ticks = song.record.beats_per_bar * song.record.ticks_per_beat
        k = math.floor(tmap.ticks_exact(after_ns) / bar_ticks) + 1
        self._next_bar_ns = tmap.ns_at(k * bar_ticks)

    def _sync_if_due(self, force: bool) -> None:
        song = self._current()
        if song is None:
            self._next_bar_ns = None
            self._bar_marks.clear()
            return
        passed = self._clock_ns() - self.sync_delay_ns
        lines = [ns for ns in self._bar_marks if ns <= passed]
        if self._next_bar_ns is not None and self._next_bar_ns <= passed:
            lines.append(self._next_bar_ns)
            self._plan_next_bar(song, passed)
        self._bar_marks = [ns for ns in self._bar_marks if ns > passed]
        if lines or force:
            if self._journal_sync(song) and lines:
                self.stats.durable_ns = max(self.stats.durable_ns, max(lines))

    def _finish_song(self) -> None:
        song = self._current()
        if song is None:
            return
        song.open = False
        self._next_bar_ns = None
        if song.journal is not None and self._journal_sync(song):
            jr.close_quietly(song.journal)
            song.journal = None
        # its .mid is written by _write_pending_mids, at the end of this batch

    def _write_pending_mids(self) -> None:
        for song in self._songs:
            if not song.open and not song.mid_ok:
                self._write_mid(song)

    # ---- files (writer thread) ----
    def _open_journal(self, song: _Song) -> None:
        """(Re)write the song's whole journal from memory, atomically, and keep it open for appending."""
        path = self.folder / (song.stem + jr.JOURNAL_SUFFIX)
        try:
            song.journal = jr.open_journal_atomic(song.record, path, self._opener)
        except OSError as exc:
            self._fail(f"journal {song.stem}", f"{path}: {exc}")
            return
        self._problems.discard(f"journal {song.stem}")

    def _journal_write(self, song: _Song, line: bytes) -> None:
        try:
            song.journal.write(line)
        except OSError as exc:
            self._journal_broken(song, exc)

    def _journal_sync(self, song: _Song) -> bool:
        """Flush + fsync the song's journal, or rewrite it whole if a write failed earlier. True when durable."""
        if song.journal is None:
            self._open_journal(song)
            return song.journal is not None
        try:
            song.journal.flush()
            os.fsync(song.journal.fileno())
        except OSError as exc:
            self._journal_broken(song, exc)
            return False
        self.stats.syncs += 1
        return True

    def _journal_broken(self, song: _Song, exc: OSError) -> None:
        jr.close_quietly(song.journal)
        song.journal = None  # rewritten whole from memory at the next bar line
        self._fail(f"journal {song.stem}", f"{self.folder / (song.stem + jr.JOURNAL_SUFFIX)}: {exc}")

    def _save_mid(self, song: _Song, folder: Path) -> Path:
        """The song's ``.mid`` in ``folder`` (created if missing); raises OSError."""
        path = folder / (song.stem + ".mid")
        folder.mkdir(parents=True, exist_ok=True)
        jr.save_midi_atomic(jr.song_midi(song.record), path, self._opener)
        return path

    def _write_mid(self, song: _Song) -> None:
        path = self.folder / (song.stem + ".mid")
        try:
            self._save_mid(song, self.folder)
        except OSError as exc:
            self._fail(f"mid {song.stem}", f"{path}: {exc}")
            return
        song.mid_ok = True
        self._problems.discard(f"mid {song.stem}")
        self._problems.discard(f"journal {song.stem}")
        if path not in self.stats.paths:
            self.stats.paths.append(path)
        try:
            (self.folder / (song.stem + jr.JOURNAL_SUFFIX)).unlink(missing_ok=True)
        except OSError as exc:  # harmless: recover() retires a journal whose .mid exists
            self._count_error(f"{song.stem}{jr.JOURNAL_SUFFIX}: cannot remove ({exc})")

    def _write_fallbacks(self) -> None:
        """At close: every song whose ``.mid`` could not be written goes to the first fallback folder that takes it."""
        for song in self._songs:
            if song.mid_ok:
                continue
            for folder in self.fallback_dirs:
                try:
                    path = self._save_mid(song, folder)
                except OSError as exc:
                    self._count_error(f"fallback {folder / (song.stem + '.mid')}: {exc}")
                    continue
                self.stats.fallback_paths.append(path)
                if self._on_error is not None:
                    self._on_error(f"{self.folder / (song.stem + '.mid')} could not be written; the whole song is "
                                   f"in {path} instead")
                break

    def _fail(self, problem: str, message: str) -> None:
        was_healthy = not self._problems
        self._problems.add(problem)
        self._count_error(message)
        if was_healthy and self._on_error is not None:
            self._on_error(f"recording not safe on disk: {message}")

    def _count_error(self, message: str) -> None:
        self.stats.write_errors += 1
        self.stats.last_error = message
