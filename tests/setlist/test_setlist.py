"""Setlist validation: every kind of mistake gets an error naming file, song, field and allowed values."""

from pathlib import Path

import pytest

from liveperf.setlist.schema import SetlistError, load_setlist

ROOT = Path(__file__).resolve().parents[2]
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


def test_swing_is_a_ratio_or_follow(tmp_path):
    songs = "".join(f'[[song]]\n{GOOD_SONG.replace("title = ", "title = " + repr(str(i)) + " # ")}swing = {v}\n'
                    for i, v in enumerate(("0.6", '"follow"')))
    sl = load_setlist(write(tmp_path, songs + "[[song]]\n" + GOOD_SONG))
    assert [s.swing for s in sl.songs] == [0.6, None, 0.5]  # a number, the performer's, straight by default


def test_key_auto_with_or_without_a_start_and_key_follow(tmp_path):
    text = "".join(f'[[song]]\ntitle = "{i}"\ntempo_bpm = 100\nkey = "{k}"\n{extra}'
                   for i, (k, extra) in enumerate((("auto", ""), ("Auto  G major", ""), ("A minor", ""),
                                                   ("E dorian", 'key_follow = "modulations"\n'))))
    songs = load_setlist(write(tmp_path, text)).songs
    assert [(str(s.key), s.key_auto, s.key_follow) for s in songs] == [
        ("C chromatic", True, "off"),  # no key until the performer is heard: no mask
        ("G major", True, "off"), ("A minor", False, "off"), ("E dorian", False, "modulations")]
    with pytest.raises(SetlistError, match="song 1 .*field 'key' = 'auto H major'"):
        load_setlist(write(tmp_path, '[[song]]\ntitle = "A"\ntempo_bpm = 90\nkey = "auto H major"\n'))
    with pytest.raises(SetlistError, match="field 'key_follow' = 'always'.*off, modulations"):
        load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG + 'key_follow = "always"\n'))
    assert {s.key_change_at for s in songs} == {"bar"}
    beat = load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG + 'key_change_at = "beat"\n')).songs[0]
    assert beat.key_change_at == "beat"
    with pytest.raises(SetlistError, match="field 'key_change_at' = 'bars'.*bar, beat"):
        load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG + 'key_change_at = "bars"\n'))


def test_a_comp_song_names_its_rhythm_and_model(tmp_path):
    sl = load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG + 'mode = "comp"\ncomp_rhythm = "half_bar"\n'
                            + "[[song]]\n" + GOOD_SONG))
    assert [(s.mode, s.comp_rhythm, s.comp_model) for s in sl.songs] == [("comp", "half_bar", "comp_dnn"),
                                                                          ("call_response", "beat", "comp_dnn")]
    with pytest.raises(SetlistError, match="field 'comp_rhythm' = 'swing'.*beat, half_bar, bar, model"):
        load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG + 'comp_rhythm = "swing"\n'))
    with pytest.raises(SetlistError, match="field 'comp_model' = ''"):
        load_setlist(write(tmp_path, "[[song]]\n" + GOOD_SONG + 'comp_model = ""\n'))


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


@pytest.mark.parametrize("field, value, allowed", [
    ("density", "1.5", "0.0 to 1.0"),
    ("program", "0", "1..128"),
    ("program", "129", "1..128"),
    ("bank", "16384", "0..16383"),
    ("select_program", '"one"', "1..128"),
    ("select_bank", "-2", "0..16383"),
    ("phrase_every_bars", "1", "2 to 16"),
    ("sigma", "3.5", "0.0 to 3.0"),
    ("top_k", "130", "0 to 129"),
    ("velocity", "0", "'follow'"),
    ("swing", "0.9", "'follow'"),
    ("swing", '"lazy"', "0.5 to 0.75"),
])
def test_bad_show_control_song_fields(tmp_path, field, value, allowed):
    test_bad_values_name_song_field_and_allowed(tmp_path, field, value, allowed)


@pytest.mark.parametrize("show, message", [
    ('program_change = "maybe"', "field 'program_change' = 'maybe' is not allowed; it must be one of select, ignore"),
    ("stage_view = 1", "field 'stage_view' = 1 is not allowed; it must be true or false"),
    ("midi_in = 3", "field 'midi_in' = 3"),
    ("cc = {param = 'temperature'}", "field 'cc'"),
    ("cc = [{param = 'nope', channel = 1, cc = 7}]", "unknown parameter 'nope'"),
    ("cc = [{param = 'temperature', channel = 17, cc = 7}]", "channel: 17 is not allowed; an integer from 1 to 16"),
    ("cc = [{param = 'temperature', channel = 1, cc = 7, extra = 1}]", "exactly param, channel"),
    ("[show.osc]\nport = 9000", r"\[show.osc\]: unknown field\(s\) \['port'\]"),
    ("[show.osc]\nhost = 'stage.local'", "field 'host' = 'stage.local'"),
    ("[show.osc]\nudp_port = 70000", "field 'udp_port' = 70000"),
    ("[show.osc]\nallow = ['192.168.1.0/33']", "'192.168.1.0/33' is not an IP address or network"),
    ("[show.osc]\nfeedback = ['10.0.0.5']", "'10.0.0.5' is not allowed"),
    ("[show.osc]\nfeedback = ['desk.local:8000']", "'desk.local:8000' is not allowed"),
    ("[show.osc]\nfeedback_protocol = 'http'", "one of udp, tcp"),
    ("[show.osc]\nrate_limit_per_s = 0", "field 'rate_limit_per_s' = 0"),
    ("osc = 5", r"\[show.osc\]: must be a table"),
])
def test_bad_show_fields_name_the_field_and_what_is_allowed(tmp_path, show, message):
    p = write(tmp_path, "[show]\n" + show + "\n[[song]]\n" + GOOD_SONG)
    with pytest.raises(SetlistError, match=message) as err:
        load_setlist(p)
    assert str(p) in str(err.value)


def test_show_control_fields_parse(tmp_path):
    text = ("[show]\nprogram_change = 'ignore'\nstage_view = false\nmidi_in = 'Keystation'\nrecord_dir = 'takes'\n"
            "cc = [{param = 'density', channel = 2, cc = 1}]\n[show.osc]\nhost = '0.0.0.0'\nudp_port = 8000\n"
            "tcp_port = -1\nallow = ['192.168.1.0/24']\nfeedback = ['192.168.1.20:7000', 'localhost:9999']\n"
            "[[song]]\n" + GOOD_SONG + "program = 5\nbank = 130\nselect_program = 12\ndensity = 0.5\n")
    sl = load_setlist(write(tmp_path, text))
    assert (sl.program_change, sl.stage_view, sl.midi_in, sl.record_dir) == ("ignore", False, "Keystation", "takes")
    assert sl.cc == ({"param": "density", "channel": 2, "cc": 1},)
    assert (sl.osc.host, sl.osc.udp_port, sl.osc.tcp_port, sl.osc.allow) == ("0.0.0.0", 8000, None, ("192.168.1.0/24",))
    assert sl.osc.feedback == (("192.168.1.20", 7000), ("127.0.0.1", 9999))
    s = sl.songs[0]
    assert (s.program, s.bank, s.select_program, s.select_bank, s.density) == (5, 130, 12, None, 0.5)
    assert sl.song_for_program(11, None) == 0 and sl.song_for_program(0, None) is None


# ---- property: any wrong value for any field is an error that names the file, the song and the field -------------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from liveperf.setlist.schema import SHOW_FIELDS, SONG_FIELDS, parse_setlist  # noqa: E402
from liveperf.setlist.show_tables import LINK_FIELDS, OSC_FIELDS  # noqa: E402

WRONG = st.one_of(st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, -5, 10**30, True, "",
                                   "nan", [], [float("nan")], {}]),
                  st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20), st.text(max_size=8))
SONG_BASE = {"title": "A", "tempo_bpm": 100, "key": "D dorian"}


def _numbers(obj, seen=None):
    """Every int and float reachable from a parsed setlist (dataclasses, tuples, lists, dicts)."""
    import dataclasses
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _numbers(getattr(obj, f.name))
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _numbers(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _numbers(x)


def _check(raw, where_parts):
    import math
    try:
        setlist = parse_setlist(raw, Path("/stage/set.toml"))
    except SetlistError as exc:  # the one allowed failure: it names where
        assert all(part in str(exc) for part in where_parts), (str(exc), where_parts)
        return
    # Accepted: then no value in it may be NaN or infinite (a NaN tempo once passed as GO and failed mid-show).
    assert all(math.isfinite(x) for x in _numbers(setlist)), raw


@settings(max_examples=5000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(SONG_FIELDS)), WRONG)
def test_any_song_field_value_parses_or_names_file_song_and_field(field, value):
    _check({"song": [SONG_BASE, {**SONG_BASE, "title": "B", field: value}]},
           ["/stage/set.toml", "song 2", f"'{field}'"] if field != "title" else ["/stage/set.toml", "song 2"])


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(set(SHOW_FIELDS) - {"osc", "link"})), WRONG)
def test_any_show_field_value_parses_or_names_file_and_field(field, value):
    _check({"show": {field: value}, "song": [SONG_BASE]}, ["/stage/set.toml", "[show]", field])


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(OSC_FIELDS)), WRONG)
def test_any_osc_field_value_parses_or_names_file_and_field(field, value):
    _check({"show": {"osc": {field: value}}, "song": [SONG_BASE]}, ["/stage/set.toml", "osc", field])


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(LINK_FIELDS)), WRONG)
def test_any_link_field_value_parses_or_names_file_and_field(field, value):
    _check({"show": {"clock": "link", "link": {field: value}}, "song": [SONG_BASE]},
           ["/stage/set.toml", "[show.link]", field])


def test_link_settings_default_and_parsed():
    base = {"song": [SONG_BASE]}
    sl = parse_setlist({**base, "show": {"clock": "link"}}, Path("/stage/set.toml"))
    assert (sl.clock, sl.link.start_stop, sl.link.tempo) == ("link", True, "follow")
    sl = parse_setlist({**base, "show": {"clock": "link", "link": {"start_stop": False, "tempo": "lead"}}},
                       Path("/stage/set.toml"))
    assert (sl.link.start_stop, sl.link.tempo) == (False, "lead")

