"""Between songs, on the show's thread: the song's synth patch before its first note, and an inbox cleared of the
last song's performer events (control commands stay: a song change asked for during the change still counts)."""

from __future__ import annotations

import queue

from liveperf.setlist.schema import Song
from liveperf.timing.scheduler import Scheduler


def send_patch(scheduler: Scheduler, song: Song, start_ns: int) -> None:
    """The song's synth patch on the partner's channel, just before its first note: Bank Select, Program Change."""
    ch = song.channel - 1
    at = start_ns - 2_000_000
    if song.bank is not None:
        scheduler.schedule(at, bytes((0xB0 | ch, 0, song.bank >> 7)))
        scheduler.schedule(at, bytes((0xB0 | ch, 32, song.bank & 0x7F)))
    if song.program is not None:
        scheduler.schedule(at, bytes((0xC0 | ch, song.program - 1)))


def drain_inbox(inbox: queue.SimpleQueue) -> None:
    """Between songs: drop the old song's performer events (and its take's end marker); keep control commands."""
    keep = []
    while True:
        try:
            ev = inbox.get_nowait()
        except queue.Empty:
            break
        if not isinstance(ev[1], (bytes, bytearray)):
            keep.append(ev)
    for ev in keep:
        inbox.put(ev)
