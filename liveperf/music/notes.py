"""Raw MIDI channel messages as bytes, and held-note tracking so every note-on gets its note-off.

Messages inside liveperf are ``bytes`` (status byte first), the form rtmidi sends and receives. Channels are
0..15 here (1..16 only in setlists and on screen). ``HeldNotes`` is owned by one thread (the scheduler tracks what
really went out; the engine tracks what it meant to play).
"""

from __future__ import annotations

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
PROGRAM_CHANGE = 0xC0
CC_ALL_NOTES_OFF = 123


def note_on(channel: int, pitch: int, velocity: int) -> bytes:
    return bytes((NOTE_ON | channel, pitch, velocity))


def note_off(channel: int, pitch: int) -> bytes:
    return bytes((NOTE_OFF | channel, pitch, 0))


def control_change(channel: int, control: int, value: int) -> bytes:
    return bytes((CONTROL_CHANGE | channel, control, value))


def is_note_on(data: bytes) -> bool:
    """True for a note-on with velocity > 0 (velocity 0 is a note-off by the MIDI spec)."""
    return len(data) == 3 and data[0] & 0xF0 == NOTE_ON and data[2] > 0


def is_note_off(data: bytes) -> bool:
    return len(data) == 3 and (data[0] & 0xF0 == NOTE_OFF or (data[0] & 0xF0 == NOTE_ON and data[2] == 0))


def describe(data: bytes) -> tuple:
    """Readable form for tests and logs: ('on', ch, pitch, vel), ('off', ch, pitch), ('cc', ch, cc, val), ('raw', ...)."""
    if is_note_on(data):
        return ("on", data[0] & 0x0F, data[1], data[2])
    if is_note_off(data):
        return ("off", data[0] & 0x0F, data[1])
    if len(data) == 3 and data[0] & 0xF0 == CONTROL_CHANGE:
        return ("cc", data[0] & 0x0F, data[1], data[2])
    return ("raw",) + tuple(data)


class HeldNotes:
    """Which (channel, pitch) are sounding, counting repeated note-ons so each needs its own note-off."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, int], int] = {}

    def update(self, data: bytes) -> None:
        """Track one outgoing message (non-note messages are ignored)."""
        if is_note_on(data):
            key = (data[0] & 0x0F, data[1])
            self._held[key] = self._held.get(key, 0) + 1
        elif is_note_off(data):
            key = (data[0] & 0x0F, data[1])
            # One note-off ends the note on every synth we know of, however many note-ons came before.
            self._held.pop(key, None)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._held

    def held(self) -> list[tuple[int, int]]:
        return sorted(self._held)

    def release_all(self) -> list[bytes]:
        """Note-offs for everything held (sorted, deterministic); forgets them."""
        msgs = [note_off(ch, p) for ch, p in sorted(self._held)]
        self._held.clear()
        return msgs


_TRANSPORT = frozenset((0xF2, 0xF8, 0xFA, 0xFB, 0xFC))  # Song Position, clock tick, Start, Continue, Stop


def goes_out_late(data: bytes) -> bool:
    """Messages that still go out when they are late, rather than being dropped: a note-off (a note must end), the
    messages that set the synth's state — Control Change (Bank Select, All Notes Off), Program Change — whose
    loss would leave the synth on the wrong patch for a whole song, where a few ms late costs nothing, and MIDI
    clock and transport (a drum machine takes its tempo from the tick count: a lost tick slows it for good). Only a
    late note-on (and what sounds like one) is dropped: a note played late is worse than one not played."""
    return bool(data) and (is_note_off(data) or data[0] & 0xF0 in (0xB0, 0xC0) or data[0] in _TRANSPORT)

