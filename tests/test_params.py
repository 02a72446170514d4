"""The parameter table: coerce/from_cc over whole ranges (hypothesis), smoothing in virtual time, MIDI learn."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liveperf.params import PARAMS, MidiLearn, Param, ParamError, ParamStore, coerce, from_cc, osc_address

NUMERIC = sorted(n for n, p in PARAMS.items() if p.kind != "enum")
FLOATS = sorted(n for n, p in PARAMS.items() if p.kind == "float")
INTS = sorted(n for n, p in PARAMS.items() if p.kind == "int")
MS = 1_000_000


def test_table_is_consistent():
    expected = {"temperature", "top_p", "top_k", "velocity", "tempo_bpm", "sigma", "walk_step", "density",
                "silence_steps", "response_bars", "phrase_every_bars", "mode", "partner_channel", "anchor_t", "swing",
                "comp_rhythm", "humanize_ms", "style_density", "style_register", "style_range", "style_mood", "style_syncopation"}
    assert set(PARAMS) == expected
    for name, p in PARAMS.items():
        assert isinstance(p, Param) and p.name == name and p.doc
        assert coerce(name, p.default) == p.default
        if p.kind == "enum":
            assert p.choices and p.lo is None and p.hi is None
        else:
            assert p.lo < p.hi and not p.choices
        if p.kind != "float":
            assert p.smoothing_ms == 0
    assert PARAMS["mode"].choices == ("call_response", "duet", "harmonize", "phrase", "comp")
    assert PARAMS["tempo_bpm"].smoothing_ms == 0 and PARAMS["tempo_bpm"].unit == "BPM"
    with pytest.raises(TypeError):
        PARAMS["x"] = PARAMS["mode"]  # read-only


def test_osc_address():
    assert osc_address("temperature") == "/liveperf/param/temperature"
    with pytest.raises(ParamError, match="unknown parameter 'nope'.*temperature"):
        osc_address("nope")


@given(st.sampled_from(NUMERIC), st.floats(allow_nan=True, allow_infinity=True) | st.integers())
def test_coerce_accepts_exactly_the_range(name, value):
    p = PARAMS[name]
    in_range = math.isfinite(value) and p.lo <= value <= p.hi
    right_type = isinstance(value, int) or p.kind == "float"
    if in_range and right_type:
        got = coerce(name, value)
        assert got == value and type(got) is (float if p.kind == "float" else int)
    else:
        with pytest.raises(ParamError) as e:
            coerce(name, value)
        assert e.value.name == name
        assert name in str(e.value) and str(p.lo) in str(e.value) and str(p.hi) in str(e.value)


@pytest.mark.parametrize(
    "name, value",
    [("temperature", True), ("velocity", 100.0), ("velocity", "100"), ("top_k", None), ("mode", 1),
     ("mode", "Duet"), ("temperature", float("nan")), ("tempo_bpm", [120]), ("tempo_bpm", 10**400),
     ("top_k", 10**400)],
)
def test_coerce_rejects_other_types(name, value):
    with pytest.raises(ParamError, match=f"^{name}: "):
        coerce(name, value)


def test_coerce_error_names_value_and_range():
    with pytest.raises(ParamError) as e:
        coerce("temperature", 3)
    assert str(e.value) == "temperature: 3 is not allowed; a number from 0.0 to 2.0"
    assert (e.value.name, e.value.value, e.value.allowed) == ("temperature", 3, "a number from 0.0 to 2.0")
    with pytest.raises(ParamError, match="mode: 'x' is not allowed; one of call_response, duet, harmonize, phrase"):
        coerce("mode", "x")


@given(st.sampled_from(sorted(PARAMS)), st.integers(0, 127))
def test_from_cc_stays_in_range_and_is_monotonic(name, cc):
    v = from_cc(name, cc)
    assert coerce(name, v) == v
    p = PARAMS[name]
    if p.kind == "enum":
        assert p.choices.index(from_cc(name, min(cc + 1, 127))) >= p.choices.index(v)
    else:
        assert from_cc(name, min(cc + 1, 127)) >= v


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_from_cc_ends_and_linearity(name):
    p = PARAMS[name]
    if p.kind == "enum":
        values = [from_cc(name, cc) for cc in range(128)]
        counts = [values.count(c) for c in p.choices]
        assert max(counts) - min(counts) <= 1 and sum(counts) == 128
        assert values[0] == p.choices[0] and values[127] == p.choices[-1]
        return
    assert from_cc(name, 0) == p.lo and from_cc(name, 127) == p.hi
    for cc in range(128):
        assert abs(from_cc(name, cc) - (p.lo + (p.hi - p.lo) * cc / 127)) <= (0.5 if p.kind == "int" else 1e-9)


@given(st.sampled_from(sorted(PARAMS)), st.integers().filter(lambda v: not 0 <= v <= 127) | st.just(True))
def test_from_cc_rejects_bad_cc_values(name, cc):
    with pytest.raises(ParamError, match="0 to 127"):
        from_cc(name, cc)


def test_from_cc_exact_values():
    assert [from_cc("velocity", cc) for cc in (0, 1, 62, 63, 64, 127)] == [1, 2, 63, 64, 64, 127]  # 63.5 rounds up
    assert [from_cc("top_k", cc) for cc in (0, 1, 127)] == [0, 1, 129]
    assert [from_cc("mode", cc) for cc in (0, 25, 26, 51, 52, 76, 77, 102, 103, 127)] == [
        "call_response", "call_response", "duet", "duet", "harmonize", "harmonize", "phrase", "phrase", "comp", "comp"]


def test_store_defaults_and_overrides():
    store = ParamStore({"temperature": 1.2, "mode": "duet", "velocity": 90})
    assert store.value("temperature", 0) == 1.2 and store.value("mode", 0) == "duet"
    assert store.value("top_p", 0) == 1.0 and store.target("velocity") == 90
    snap = store.snapshot(0)
    assert list(snap) == list(PARAMS) and snap["velocity"] == 90
    with pytest.raises(ParamError, match="temperature: 5"):
        ParamStore({"temperature": 5})
    with pytest.raises(ParamError, match="unknown parameter 'temp'"):
        ParamStore({"temp": 1.0})
    with pytest.raises(ParamError, match="unknown parameter"):
        store.value("temp", 0)


def test_store_smooths_floats_linearly_in_virtual_time():
    store = ParamStore()
    assert PARAMS["density"].smoothing_ms == 100
    t0 = 5_000 * MS
    assert store.set("density", 0, t0) == 0.0
    assert store.value("density", t0) == 1.0
    assert store.value("density", t0 + 25 * MS) == pytest.approx(0.75)
    assert store.value("density", t0 + 50 * MS) == pytest.approx(0.5)
    assert store.value("density", t0 + 100 * MS) == 0.0
    assert store.target("density") == 0.0
    # A new value mid-glide starts from where the glide is now.
    store.set("density", 1, t0 + 50 * MS)
    assert store.value("density", t0 + 50 * MS) == pytest.approx(0.5)
    assert store.value("density", t0 + 100 * MS) == pytest.approx(0.75)
    assert store.value("density", t0 + 150 * MS) == 1.0


def test_store_ints_enums_and_unsmoothed_floats_jump():
    store = ParamStore()
    store.set("velocity", 30, 10 * MS)
    store.set("mode", "phrase", 10 * MS)
    store.set("tempo_bpm", 90, 10 * MS)
    assert (store.value("velocity", 10 * MS), store.value("mode", 10 * MS), store.value("tempo_bpm", 10 * MS)) == (
        30, "phrase", 90.0)
    with pytest.raises(ParamError):
        store.set("velocity", 0, 11 * MS)
    assert store.value("velocity", 11 * MS) == 30


def test_midi_learn_maps_the_first_cc_seen_and_disarms():
    learn = MidiLearn()
    assert learn.on_cc(0, 74, 64) is None
    learn.arm("temperature")
    assert learn.armed == "temperature"
    assert learn.on_cc(2, 74, 127) == ("temperature", 2.0)  # learned: the knob's value applies at once
    assert learn.armed is None
    assert learn.on_cc(2, 74, 0) == ("temperature", 0.0)
    assert learn.on_cc(0, 74, 0) is None  # other channel
    assert learn.on_cc(2, 75, 0) is None  # other controller
    assert learn.mappings() == [{"param": "temperature", "channel": 3, "cc": 74}]


def test_midi_learn_relearn_replaces_both_sides():
    learn = MidiLearn([{"param": "temperature", "channel": 1, "cc": 74}, {"param": "mode", "channel": 1, "cc": 20}])
    assert learn.on_cc(0, 20, 127) == ("mode", "comp")
    learn.arm("temperature")
    learn.on_cc(0, 75, 0)  # temperature moves to CC 75; CC 74 is free
    learn.arm("density")
    learn.on_cc(0, 20, 0)  # CC 20 now drives density, not mode
    assert learn.mappings() == [{"param": "density", "channel": 1, "cc": 20},
                                {"param": "temperature", "channel": 1, "cc": 75}]
    assert learn.on_cc(0, 74, 10) is None
    learn.arm("velocity")
    learn.disarm()
    assert learn.on_cc(0, 1, 1) is None and learn.armed is None


@pytest.mark.parametrize(
    "mapping, match",
    [({"param": "nope", "channel": 1, "cc": 1}, "unknown parameter"),
     ({"param": "mode", "channel": 0, "cc": 1}, "channel"),
     ({"param": "mode", "channel": 1, "cc": 128}, "cc"),
     ({"param": "mode", "channel": 1}, "exactly param, channel"),
     ({"param": "mode", "channel": 1, "cc": 1, "x": 2}, "exactly param, channel")],
)
def test_midi_learn_validates_setlist_mappings(mapping, match):
    with pytest.raises(ParamError, match=match):
        MidiLearn([mapping])
    with pytest.raises(ParamError):
        MidiLearn().arm("nope")


def test_defaults_are_a_setlist_songs():
    """The manual shows both tables (liveperf.docs_ref): a parameter that is also a song field has its default."""
    from liveperf.setlist.schema import SONG_FIELDS
    for name, p in PARAMS.items():
        field = {"partner_channel": "channel"}.get(name, name)
        if field in SONG_FIELDS and isinstance(SONG_FIELDS[field][0], (int, float)) and p.kind != "enum":
            assert p.default == SONG_FIELDS[field][0], name
