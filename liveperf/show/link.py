"""The show's side of Ableton Link (``[show] clock = "link"``): join the session, make the clock, start each song on
the session's bar line.

- ``start_link``: joins (or starts) the session at the first song's tempo with the quantum of its bar, waiting up to
  ``DISCOVER_S`` for other peers (so the first note is on the session's tempo and phase); with
  ``[show.link] start_stop`` the show presses play (it starts the session's transport, as pressing play in any
  Link app does with start/stop sync). Without aalink, or when Link cannot start, it says why and returns
  ``(None, None)``: the show goes on with its internal clock.
- ``begin_song``: the quantum becomes the song's bar; leading (``tempo = "lead"``) proposes the song's tempo; the
  song starts at the first bar line of the session at or after ``start_ns``.

Threads: the show's thread, between songs (the engine thread of the last song has been joined).
"""

from __future__ import annotations

import time
from typing import Callable

from liveperf.io.link_session import LinkSession, LinkUnavailable
from liveperf.setlist.schema import Setlist, Song
from liveperf.timing.link_clock import LeadingLinkClock, LinkClock


DISCOVER_S = 1.5  # how long the show waits for other peers before its first note (alone, it starts after this)
SETTLE_S = 0.3  # then how long it lets Link measure the peer's session and join it


def bar_beats(song: Song, steps_per_beat: int) -> float:
    """One bar of the song in quarter-note beats: the Link quantum."""
    return song.steps_per_bar(steps_per_beat) / steps_per_beat


def start_link(setlist: Setlist, song: Song, steps_per_beat: int, now_ns: Callable[[], int],
               log: Callable[[str], None],
               discover_s: float = DISCOVER_S) -> tuple[LinkSession | None, LinkClock | None]:
    session = LinkSession(now_ns)
    quantum = bar_beats(song, steps_per_beat)
    try:
        session.start(song.tempo_bpm, quantum, start_stop=setlist.link.start_stop)
        # Peers answer within a few hundred ms: joining before the first note starts the show on the session's
        # tempo and phase instead of jumping to them in the first bar.
        end = time.monotonic() + discover_s
        while session.read().peers == 0 and time.monotonic() < end:
            time.sleep(0.01)
        if session.read().peers:
            time.sleep(SETTLE_S)  # a peer is seen before its session is measured and joined
        if setlist.link.start_stop:
            session.set_playing(True)
    except LinkUnavailable as exc:
        session.close()
        log(f"warning: {exc}; playing on the internal clock")
        return None, None
    kw = dict(start_stop=setlist.link.start_stop)
    clock = (LeadingLinkClock(session.read, session.set_tempo, steps_per_beat, quantum, **kw)
             if setlist.link.tempo == "lead" else LinkClock(session.read, steps_per_beat, quantum, **kw))
    log(f"Link: {clock.peers} other peer{'' if clock.peers == 1 else 's'}, {clock.tempo_bpm:.2f} BPM, quantum "
        f"{quantum:g} beats, start/stop {'shared' if setlist.link.start_stop else 'not shared'}, tempo "
        f"{setlist.link.tempo}")
    return session, clock


def begin_song(session: LinkSession, clock: LinkClock, song: Song, steps_per_beat: int, start_ns: int) -> int:
    """Set the song's quantum (and tempo, leading); return its first step, the bar line at or after ``start_ns``."""
    quantum = bar_beats(song, steps_per_beat)
    session.set_quantum(quantum)
    clock.set_bar(quantum)
    if isinstance(clock, LeadingLinkClock):
        clock.set_tempo(song.tempo_bpm, clock.step_at(start_ns))
    clock.song_step = clock.next_bar_step(start_ns)
    return clock.song_step
