"""Style knobs choose among candidates (issue 17): the compiled attributes and contour equal their specifications,
the choice goes where the knobs point, and every knob moves its attribute monotonically through the live
generator on a small seeded sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from liveperf.models.phrase_models import VaeModel
from liveperf.modes.phrase import VaePhrases
from liveperf.modes.settings import with_param
from liveperf.music import melody, style
from liveperf.music.melody import HOLD, OFF
from liveperf.music.sampler import new_rng_state
from tests.fakes import settings
from tests.music.test_style import C_MAJOR_ALL, vae_settings

TOKENS = st.sampled_from([HOLD, HOLD, OFF] + [melody.PITCH_OFFSET + p for p in (0, 48, 55, 60, 62, 64, 65, 67, 69,
                                                                                70, 71, 73, 127)])


def phrase(pitches_at: dict[int, int], steps: int = 32) -> np.ndarray:
    """Tokens: a note-on of ``pitch`` at each step given, HOLD elsewhere."""
    out = np.full(steps, HOLD, dtype=np.int64)
    for step, pitch in pitches_at.items():
        out[step] = melody.PITCH_OFFSET + pitch
    return out


@hsettings(max_examples=300, deadline=None)
@given(st.integers(1, 5).flatmap(lambda k: st.lists(st.lists(TOKENS, min_size=32, max_size=32), min_size=k,
                                                    max_size=k)), st.sampled_from([2, 3, 4]))
def test_compiled_attributes_are_the_specification_row_by_row(rows, steps_per_beat):
    rows = np.array(rows, dtype=np.int64)
    got = style.attributes_rows(rows, steps_per_beat)
    want = np.stack([style.attributes(r, steps_per_beat) for r in rows])
    np.testing.assert_allclose(got, want, atol=1e-9, equal_nan=True)


def reference_contour(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = melody.sounding_pitch(a), melody.sounding_pitch(b)
    both = (sa >= 0) & (sb >= 0)
    if both.sum() < 3 or np.ptp(sa[both]) == 0 or np.ptp(sb[both]) == 0:
        return 0.0
    return float(np.corrcoef(sa[both], sb[both])[0, 1])


@hsettings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, min_size=32, max_size=32), st.lists(st.lists(TOKENS, min_size=32, max_size=32), min_size=1,
                                                            max_size=4))
def test_contour_correlation_of_many_rows_is_each_rows(line, rows):
    line, rows = np.array(line), np.array(rows)
    np.testing.assert_allclose(style.contour_corr(line, rows), [reference_contour(line, r) for r in rows], atol=1e-9)


def test_the_further_a_knob_is_turned_the_more_candidates():
    assert style.candidates_for([0.0] * 5) == 1
    assert style.candidates_for([0.0, 0.25, 0.0, 0.0, 0.0]) == 1 + round(0.5 * (style.SELECT_MAX - 1))
    assert style.candidates_for([0.0, 0.0, -0.5, 0.0, 0.0]) == style.SELECT_MAX
    assert style.candidates_for([1.0, 0.0, 0.0, 0.0, -1.0]) == style.SELECT_MAX


def test_the_choice_goes_where_the_knob_points_and_keeps_to_one_scale():
    sparse = phrase({0: 60, 16: 64})  # two long notes
    busy = phrase({s: (60, 62, 64, 65)[s // 2 % 4] for s in range(0, 32, 2)})  # 8ths, in C major
    busy_chromatic = phrase({s: (60, 62, 63, 66)[s // 2 % 4] for s in range(0, 32, 2)})  # 8ths, no scale holds them
    density = style.STYLE_KNOBS.index("density")
    up, down = [0.0] * 5, [0.0] * 5
    up[density], down[density] = 1.0, -1.0
    rows = np.stack([busy_chromatic, sparse, busy])
    assert style.choose(rows, up) == 2  # the busy phrase in one scale, not the chromatic one
    assert style.choose(rows, down) == 1
    empty = np.full(32, HOLD, dtype=np.int64)
    assert style.choose(np.stack([empty, sparse]), up) == 1  # an empty phrase only when all are


def test_restyle_chooses_near_the_performers_line():
    """With a reference (the performer's attributes) and line, the candidate that moves the commanded way and
    keeps the performer's contour wins over one that moves as far but turns the contour over."""
    line = phrase({0: 60, 4: 62, 8: 64, 12: 65, 16: 67, 20: 69, 24: 71, 28: 72})  # a rising scale in quarters
    same_contour_denser = phrase({**{s: 60 + s // 4 * 2 for s in range(0, 28, 2)}, 28: 72, 30: 72})
    upside_down_denser = phrase({s: 72 - s // 4 * 2 for s in range(0, 32, 2)})
    knobs = [0.0] * 5
    knobs[style.STYLE_KNOBS.index("density")] = 1.0
    ref = (style.attributes(line) - style.ATTRIBUTE_MEAN) / style.ATTRIBUTE_SD
    rows = np.stack([upside_down_denser, same_contour_denser])
    assert style.choose(rows, knobs, ref, style.RESTYLE_SPAN_SD, line=line) == 1


@pytest.fixture(scope="module")
def source():
    return VaePhrases(VaeModel.load())


@pytest.mark.parametrize("knob", style.STYLE_KNOBS)
def test_each_knob_moves_its_attribute_monotonically_on_a_seeded_sample(source, knob):
    """20 latent draws (seeded) at -1, -0.5, 0, 0.5, 1: the knob's attribute's mean never falls and rises from
    each end to the middle; syncopation has no room below none, so its two lowest positions may tie at 0."""
    i = style.STYLE_KNOBS.index(knob)
    silent = np.zeros(32, dtype=np.int64)
    means = []
    for value in (-1.0, -0.5, 0.0, 0.5, 1.0):
        s = with_param(vae_settings(), f"style_{knob}", value)
        a = style.attributes_rows(np.stack([source.next_phrase(s, silent, new_rng_state(k)) for k in range(20)]))
        means.append(float(np.nanmean(a[:, i])))
    assert all(lo <= hi for lo, hi in zip(means, means[1:])), means
    assert means[0] < means[2] < means[4] and means[1] <= means[2] < means[3], means


def test_shift_within_moves_the_whole_line_along_the_scale_and_stops_short_of_the_range():
    from liveperf.music.scales import parse_key, token_mask
    key = token_mask(parse_key("C major"), 0, 127)
    line = phrase({0: 60, 4: 64, 8: 67, 12: 72})  # C E G C
    up2 = style.shift_within(line, 2, key, token_mask(parse_key("C major"), 48, 84))
    assert (up2[up2 >= 2] - melody.PITCH_OFFSET).tolist() == [64, 67, 71, 76]  # E G B E: two scale steps up
    # the range ends at 74: 7 steps would take the top C to 84; the most that fits is 1 step (D at 74)
    capped = style.shift_within(line, 7, key, token_mask(parse_key("C major"), 48, 74))
    assert (capped[capped >= 2] - melody.PITCH_OFFSET).tolist() == [62, 65, 69, 74]
    down = style.shift_within(line, -3, key, token_mask(parse_key("C major"), 48, 84))
    assert (down[down >= 2] - melody.PITCH_OFFSET).tolist() == [55, 59, 62, 67]  # G B D G
    assert style.shift_within(line, 3, key, token_mask(parse_key("C major"), 60, 72)).tolist() == line.tolist()


@pytest.mark.parametrize("knob", ["density", "register", "range", "mood"])
def test_the_knobs_move_gan_phrases_too(knob):
    """A GAN song (best of 12): the knobs choose among the candidates, away from the critic's choice as they ask
    (register moves the chosen line along the scale): over 20 seeded draws the attribute's mean at -1 < 0 < +1.
    At 0 the critic chooses, as before. (The GAN writes no syncopation: that knob has nothing to choose from.)"""
    from liveperf.models.phrase_models import GanModel
    from liveperf.modes.phrase import GanPhrases
    from liveperf.music.scales import parse_key, token_mask
    gan = GanPhrases(GanModel.load())
    i = style.STYLE_KNOBS.index(knob)
    silent = np.zeros(32, dtype=np.int64)
    means = []
    for value in (-1.0, 0.0, 1.0):
        s = with_param(settings(channel=1, velocity=70, phrase_source="gan", candidates=12, tonic_pcs=frozenset({0, 4, 7}),
                                key_allowed=C_MAJOR_ALL, allowed=token_mask(parse_key("C major"), 48, 96)),
                       f"style_{knob}", value)
        a = style.attributes_rows(np.stack([gan.next_phrase(s, silent, new_rng_state(k)) for k in range(20)]))
        means.append(float(np.nanmean(a[:, i])))
    assert means[0] < means[1] < means[2], means
