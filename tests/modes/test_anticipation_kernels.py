"""The anticipating duet's compiled kernels against their numpy specification
(``liveperf.modes.anticipation_reference``)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from liveperf.music import melody
from liveperf.modes import anticipation as a
from liveperf.modes import anticipation_reference as ref

seeds = st.integers(0, 2**32 - 1)


def predicted_from(seed: int, spread: float, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=melody.NUM_CLASSES) * spread
    if ties:  # equal log-probabilities: the lower token first, as a stable argsort
        x[rng.integers(0, melody.NUM_CLASSES, size=20)] = x.max()
    return x - np.log(np.exp(x - x.max()).sum()) - x.max()


@settings(max_examples=300, deadline=None)
@given(seeds, st.floats(0.1, 8.0), st.booleans(), st.booleans())
def test_candidates_match_the_reference(seed, spread, ties, single):
    predicted = predicted_from(seed, spread, ties)
    tokens, weights = np.zeros(a.MAX_CANDIDATES, np.int64), np.zeros(a.MAX_CANDIDATES)
    n = a._candidates(predicted.astype(np.float32) if single else predicted, tokens, weights)
    want_tokens, want_weights = ref.candidates(predicted.astype(np.float32) if single else predicted)
    assert tokens[:n].tolist() == want_tokens.tolist()
    np.testing.assert_allclose(weights[:n], want_weights, rtol=1e-9)


@settings(max_examples=300, deadline=None)
@given(seeds, st.integers(1, a.MAX_CANDIDATES), st.sampled_from([None, 60, 67, 72, 55]),
       st.sampled_from([None, 48, 53, 60, 41]), st.booleans())
def test_mix_matches_the_reference(seed, n, sounding, partner_sounding, single):
    rng = np.random.default_rng(seed)
    tokens = rng.choice([melody.HOLD, melody.OFF] + [melody.on(p) for p in range(50, 80)], size=n, replace=False)
    weights = rng.dirichlet(np.ones(n))
    rows = np.stack([np.log(rng.dirichlet(np.ones(melody.NUM_CLASSES) * 0.3)) for _ in range(n + 2)])
    rows = np.maximum(rows, -200.0).astype(np.float32 if single else np.float64)
    row_of = np.full(melody.NUM_CLASSES, -1, np.int64)
    order = rng.permutation(n + 2)[:n]  # rows in any order, some not used
    row_of[tokens] = order
    out = np.empty(melody.NUM_CLASSES, np.float32)
    a._mix(rows, row_of, tokens.astype(np.int64), weights, n, -1 if sounding is None else sounding,
           -1 if partner_sounding is None else partner_sounding, out)
    want = ref.mix(rows[order], tokens, weights, sounding, partner_sounding)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)


@given(st.lists(st.sampled_from([melody.HOLD, melody.OFF, melody.on(60), melody.on(64), melody.on(67)]),
                min_size=1, max_size=a.MAX_CANDIDATES, unique=True), seeds,
       st.sampled_from([a._NONE, a.STILL, melody.on(62)]))
def test_select_keeps_what_partner_logits_asks_for(tokens, seed, which):
    weights = np.random.default_rng(seed).dirichlet(np.ones(len(tokens)))
    out_t, out_w = np.zeros(a.MAX_CANDIDATES, np.int64), np.zeros(a.MAX_CANDIDATES)
    m = a._select(np.array(tokens, np.int64), weights, len(tokens), which, out_t, out_w)
    if which == a._NONE:
        want = list(zip(tokens, weights))
    elif which == a.STILL:
        want = [(t, w) for t, w in zip(tokens, weights) if t < melody.PITCH_OFFSET] or [(melody.HOLD, 1.0)]
    else:
        want = [(which, 1.0)]
    total = sum(w for _, w in want)
    assert out_t[:m].tolist() == [t for t, _ in want]
    np.testing.assert_allclose(out_w[:m], [w / total for _, w in want])
