"""The one OSC table: every address liveperf accepts and every address it sends, with arguments and meaning.

``OSC_IN`` rows are (address, argument types, what it does, notes); ``OSC_OUT`` rows are (address, types, what).
The server's parser (``osc_protocol.command_for``) and the feedback sender (``osc_feedback.OscFeedback``) are the
code; this table is what the manual shows (``liveperf.docs_ref`` renders ``docs/reference/osc.md`` from it), and a
test holds the table and the code to the same addresses. Data only; imports nothing of liveperf.
"""

from __future__ import annotations

OSC_IN: tuple[tuple[str, str, str, str], ...] = (
    ("/liveperf/song/next", "trigger", "go to the next song of the playlist", "at the next bar line"),
    ("/liveperf/song/prev", "trigger", "go back one song", "at the next bar line"),
    ("/liveperf/song/select", "i", "go to song number N (1-based)", "at the next bar line"),
    ("/liveperf/song/select", "s", "go to the first song whose title contains the text", "at the next bar line"),
    ("/liveperf/tempo", "f or i", "set the internal clock's tempo, BPM", "20..400; ignored while following MIDI clock or "
     "Link (unless `[show.link] tempo = \"lead\"`)"),
    ("/liveperf/tap", "trigger", "tap the tempo (3 taps or more)", "the packet's arrival is the tap"),
    ("/liveperf/mode", "s", "switch the partner's mode", "at the next bar line"),
    ("/liveperf/param/<name>", "f, i or s", "set a live parameter (see the parameter table)",
     "f or i for numbers, s for choices; pN.<name> addresses partner N"),
    ("/liveperf/learn", "s", "arm MIDI learn for a parameter: the next knob moved controls it",
     "written into the setlist"),
    ("/liveperf/panic", "trigger", "all notes off, now", ""),
    ("/liveperf/stop", "trigger", "end the show (every note ended, report written)", ""),
    ("/liveperf/ping", "(none)", "replies /liveperf/pong", "to the sender"),
    ("/liveperf/feedback/add", "s i", "send feedback to this ip and port too", "loopback or allowed hosts only"),
)

OSC_OUT: tuple[tuple[str, str, str], ...] = (
    ("/liveperf/beat", "ii", "bar, beat (both 1-based), every beat"),
    ("/liveperf/bar", "i", "bar, on beat 1"),
    ("/liveperf/downbeat", "i", "1, on beat 1 (a trigger for desks)"),
    ("/liveperf/note/on", "ii", "pitch, velocity of each partner note"),
    ("/liveperf/note/off", "i", "pitch"),
    ("/liveperf/song", "is", "song number (1-based), title, at each song's start"),
    ("/liveperf/mode", "s", "the partner's mode, when it changes"),
    ("/liveperf/partner/mode", "is", "a song with several partners: partner number (1-based), its mode; at the "
     "song's start for each partner and when one changes (`/liveperf/mode` is partner 1's)"),
    ("/liveperf/state", "s", "playing or stopped (following MIDI clock or Link: the band's Start and Stop), when it "
     "changes"),
    ("/liveperf/stats", "iiii", "once a bar: notes dropped as late, input dropped, errors, phrases or answers the "
     "copy guard drew again or cut"),
    ("/liveperf/tempo", "f", "BPM: at a song's start, on a change, and when a followed tempo moves 0.5 BPM"),
    ("/liveperf/chord", "sis", "the chord the performer holds, when it changes: name (Am7, G/B), root pitch class "
     "(0..11, C = 0), quality"),
    ("/liveperf/key", "sf", "the key the partner plays in, when it changes: name (G major, E dorian), confidence "
     "0..1"),
    ("/liveperf/link/peers", "i", "with `clock = \"link\"`: how many other Link peers the session has, at a "
     "song's start and when it changes"),
    ("/liveperf/pong", "(none)", "the answer to /liveperf/ping"),
    ("/liveperf/error", "ss", "the answer to a wrong message: its address (or \"\"), \"kind: reason\""),
)
