"""What a show loads before it plays: every song's models (each file once, errors naming the setlist, the song and
the field), a probe of them (``liveperf.check``'s, a few steps: a model that loads but gives NaN is named before the
first note), and the songs' performer takes. Plain functions; the caller's thread (start-up, or ``liveperf check``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from liveperf.music.copy_guard import INDEX_LENGTHS, CopyIndex, CopyIndexError, window_hashes
from liveperf.io.midi_file import MidiFileError, Take, read_take
from liveperf.models.metadata import ModelMetadataError
from liveperf.models.onnx_model import LoadedModel, ModelLoadError
from liveperf.modes.build import SongModels
from liveperf.setlist.schema import Setlist, Song


def load_song_models(setlist: Setlist, indices: list[int], provider: str) -> dict[int, SongModels]:
    """Load (and validate) every model the selected songs can play; raises ModelLoadError naming the file.
    A file used by several songs is loaded once."""
    cache: dict[Path, LoadedModel] = {}
    out = {}
    for i in indices:
        try:
            out[i] = SongModels.load(setlist.songs[i], setlist.path.parent, provider, cache)
        except (ModelLoadError, ModelMetadataError) as exc:
            raise ModelLoadError(f"{setlist.path}: song {i + 1} ({setlist.songs[i].title!r}): {exc}") from None
    return out


def probe_warnings(setlist: Setlist, models: dict[int, SongModels]) -> list[str]:
    """One line per song whose models fail ``check``'s probe (``liveperf.check.probe_song``): the song plays, the
    partner stays silent where the model fails."""
    from liveperf.check import probe_song  # check imports this module
    out = []
    for i, m in models.items():
        why = probe_song(m, setlist.songs[i])
        if why is not None:
            out.append(f"{setlist.path}: song {i + 1} ({setlist.songs[i].title!r}): {why}; the partner stays silent "
                       f"where it fails")
    return out


def load_copies(setlist: Setlist) -> tuple[CopyIndex | None, str | None]:
    """(the copy guard's index, None) for a setlist with ``max_copy_bars``; (None, a warning naming the file) when
    the index cannot be read: the show plays unguarded rather than not at all. (None, None) with the guard off."""
    if not setlist.max_copy_bars:
        return None, None
    try:
        index = CopyIndex.load()
        # Compiled on first use (1.3 s cold in a fresh install): here, not at the first answer of the show.
        window_hashes(np.zeros(INDEX_LENGTHS[0] + 1, dtype=np.int64), INDEX_LENGTHS[0])
        return index, None
    except CopyIndexError as exc:
        return None, f"{exc}; the copy guard is off (max_copy_bars = {setlist.max_copy_bars} asked for it)"


def shipped_takes_dir() -> Path:
    return Path(str(resources.files("liveperf") / "data" / "takes"))


def song_take(setlist: Setlist, song: Song, input_path: Path | None = None) -> Take | None:
    """The performer take for ``song``: ``input_path`` (--input), else the song's take (a shipped take name or a
    .mid path next to the setlist); a ``MidiFileError`` names the setlist, the song and the field."""
    if input_path is not None:
        return read_take(input_path)
    if not song.take:
        return None
    index = setlist.songs.index(song) if song in setlist.songs else -1
    where = f"{setlist.path}: song {index + 1} ({song.title!r}): field 'take' = {song.take!r}"
    if song.take.endswith(".mid"):
        try:
            return read_take(setlist.path.parent / song.take)
        except MidiFileError as exc:
            raise MidiFileError(f"{where}: {exc}") from None
    shipped = shipped_takes_dir() / f"{song.take}.mid"
    if not shipped.exists():
        names = sorted(p.stem for p in shipped_takes_dir().glob("*.mid"))
        raise MidiFileError(f"{where}: no shipped take of that name ({', '.join(names)}); a file must end in .mid")
    return read_take(shipped)
