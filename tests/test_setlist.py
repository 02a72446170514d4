"""Setlist validation: every kind of mistake gets an error naming file, song, field and allowed values."""

from pathlib import Path

import pytest

from liveperf.setlist import SetlistError, load_setlist

ROOT = Path(__file__).resolve().parents[1]
GOOD_SONG = 'title = "A"\ntempo_bpm = 100\nkey = "D dorian"\n'


def write(tmp_path, text):
    p = tmp_path / "set.toml"
    p.write_text(text)
    return p


def test_shipped_setlists_load():
    for path in sorted((ROOT / "setlists").glob("*.toml")):
        sl = load_setlist(path)
        assert sl.songs, path


def test_defaults(tmp_path):
    sl = load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG))
    s = sl.songs[0]
    assert (s.channel, s.meter, s.mode, s.model, s.velocity, s.trigger_cc) == (1, (4, 4), "call_response",
                                                                              "melody_dnn", None, None)
    assert str(s.key) == "D dorian"
    assert s.steps_per_bar(4) == 16


@pytest.mark.parametrize("field, value, allowed", [
    ("tempo_bpm", "0", "20 to 400"),
    ("tempo_bpm", '"fast"', "20 to 400"),
    ("channel", "17", "1 to 16"),
    ("channel", "true", "1 to 16"),
    ("meter", '"7/5"', "2, 4, 8, 16"),
    ("mode", '"karaoke"', "call_response"),
    ("pitch_range", "[80, 40]", "low < high"),
    ("pitch_range", "[40]", "low < high"),
    ("top_p", "0", "0.1 to 1.0"),
    ("temperature", "-1", "0.0 to 2.0 (0 = greedy)"),
    ("velocity", '"loud"', "'follow'"),
    ("silence_steps", "0", "1 to 64"),
    ("trigger_cc", "128", "0..127"),
])
def test_bad_values_name_song_field_and_allowed(tmp_path, field, value, allowed):
    fields = {"title": '"A"', "tempo_bpm": "100", "key": '"D dorian"', field: value}
    p = write(tmp_path, "[[song]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()))
    with pytest.raises(SetlistError) as err:
        load_setlist(p)
    msg = str(err.value)
    assert str(p) in msg and "song 1 ('A')" in msg and f"'{field}'" in msg and allowed in msg


def test_unknown_field_is_an_error(tmp_path):
    with pytest.raises(SetlistError, match=r"unknown field\(s\) \['tempo'\].*allowed fields"):
        load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG + "tempo = 90\n"))


def test_unknown_top_level_and_show_keys(tmp_path):
    with pytest.raises(SetlistError, match="unknown top-level"):
        load_setlist(write(tmp_path, "[songs]\n"))
    with pytest.raises(SetlistError, match=r"\[show\]: unknown field"):
        load_setlist(write(tmp_path, "[show]\nvolume = 3\n[[song]]\n" + GOOD_SONG))


def test_missing_required(tmp_path):
    with pytest.raises(SetlistError, match="song 1: field 'title' is missing"):
        load_setlist(write(tmp_path, '[[song]]\ntempo_bpm = 90\nkey = "C major"\n'))
    with pytest.raises(SetlistError, match="field 'key' is missing"):
        load_setlist(write(tmp_path, '[[song]]\ntitle = "B"\ntempo_bpm = 90\n'))


def test_bad_key_lists_choices(tmp_path):
    with pytest.raises(SetlistError, match="field 'key' = 'H major'.*"):
        load_setlist(write(tmp_path, '[[song]]\ntitle = "A"\ntempo_bpm = 90\nkey = "H major"\n'))


def test_no_songs_bad_toml_missing_file(tmp_path):
    with pytest.raises(SetlistError, match="no songs"):
        load_setlist(write(tmp_path, '[show]\nname = "x"\n'))
    with pytest.raises(SetlistError, match="not valid TOML"):
        load_setlist(write(tmp_path, "[[song]\n"))
    with pytest.raises(SetlistError, match="not found"):
        load_setlist(tmp_path / "nope.toml")


def test_second_song_is_named(tmp_path):
    text = "[[song]]\n" + GOOD_SONG + '[[song]]\ntitle = "Reel"\ntempo_bpm = 500\nkey = "A minor"\n'
    with pytest.raises(SetlistError, match=r"song 2 \('Reel'\): field 'tempo_bpm' = 500"):
        load_setlist(write(tmp_path, text))


def test_find_songs(tmp_path):
    sl = load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG + '[[song]]\ntitle = "Reel B"\ntempo_bpm = 90\nkey = "A minor"\n'))
    assert sl.find("2") == [1] and sl.find("reel") == [1]
    with pytest.raises(SetlistError, match="songs 1..2"):
        sl.find("3")
