"""Song settings that make the partner silent all song: warnings for ``liveperf check`` and ``liveperf play``.

A setlist that loads can still hold a song whose settings leave the partner nothing to play, in every mode:
- ``key`` and ``pitch_range`` with no pitch in common: the token mask holds no note-on at all;
- ``density`` = 0: every partner note-on becomes a rest.
Greedy and narrow sampling (``temperature`` 0, ``top_k`` 1, a small ``top_p``) are not among them: the modes then
play the likeliest allowed note where the model expects one (``liveperf.modes.note_choice``).

These are warnings, not errors: the song is valid and the show plays it (a density knob turned down to 0 on purpose
is a choice). Each message names the file, the song (number and title) and the field(s) with their values, as
setlist errors do (``liveperf.setlist.schema``). Plain functions over a loaded ``Setlist``; any thread.
"""

from __future__ import annotations

from pathlib import Path

from liveperf.setlist.schema import Setlist, Song


def song_warnings(song: Song, index: int, path: Path) -> list[str]:
    """Why song ``index`` (0-based) of the setlist at ``path`` can never sound; [] when it can."""
    where = f"{path}: song {index + 1} ({song.title!r})"
    out = []
    low, high = song.pitch_range
    if not any(song.key.contains(p) for p in range(low, high + 1)):
        out.append(f"{where}: fields 'key' = {str(song.key)!r} and 'pitch_range' = [{low}, {high}] have no pitch "
                   f"in common: the partner has no note to play, in any mode; widen 'pitch_range' or change 'key'")
    if song.density <= 0.0:
        out.append(f"{where}: field 'density' = {song.density:g}: every partner note-on becomes a rest, so the "
                   f"partner is silent all song; raise 'density' (1 = every note plays)")
    return out


def setlist_warnings(setlist: Setlist) -> list[str]:
    """``song_warnings`` of every song, in setlist order."""
    return [w for i, song in enumerate(setlist.songs) for w in song_warnings(song, i, setlist.path)]
