"""The compiled sampler against its plain-Python twin, plus the contract the engine relies on.

Agreement is exact (same token, same RNG state afterwards), not approximate: both sides do the same float64
operations in the same order (see ``liveperf.music.sampler``'s docstring), so any difference is a bug.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from liveperf.music import sampler
from liveperf.music.melody import HOLD, NUM_CLASSES
from liveperf.music.sampler import NO_CANDIDATE, new_rng_state, sample, sample_checked
from liveperf.music.sampler_reference import sample_reference, splitmix64

N = NUM_CLASSES
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Logit values: anything a float32 can hold (huge magnitudes, NaN, +-inf), or a few small values so ties happen.
_logit_values = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -7.0, 1e-30, 80.0, -80.0]),
    st.floats(-20.0, 20.0, width=32),
)
_masks = st.one_of(
    st.just(np.zeros(N, dtype=bool)),
    st.integers(0, N - 1).map(lambda i: np.eye(1, N, i, dtype=bool)[0]),
    arrays(bool, N),
    st.just(np.ones(N, dtype=bool)),
)
_temperatures = st.one_of(
    st.sampled_from([0.0, -1.0, 1.0, 5e-324, 1e-300, 1e-6, 1e300, math.inf, math.nan]),
    st.floats(0.01, 100.0),
)
_top_ks = st.one_of(st.sampled_from([0, -1, 1, 2, N - 1, N, 1000]), st.integers(0, N))
_top_ps = st.one_of(
    st.sampled_from([1.0, 0.0, -0.5, 1.5, 1e-12, 0.5, 0.9, 0.95, 1.0 - 2.0**-53, math.nan]),
    st.floats(0.0, 1.0),
)
_seeds = st.integers(0, 2**64 - 1)


def _both(logits, mask, temperature, top_k, top_p, seed, mask_dtype=bool):
    """Run both implementations from the same state; return (token, state) from each."""
    mask = np.ascontiguousarray(mask, dtype=mask_dtype)
    s_fast, s_ref = new_rng_state(seed), new_rng_state(seed)
    fast = sample(logits, mask, temperature, top_k, top_p, s_fast, NO_CANDIDATE)
    ref = sample_reference(logits, mask, temperature, top_k, top_p, s_ref, NO_CANDIDATE)
    return (fast, int(s_fast[0])), (ref, int(s_ref[0]))


def _assert_valid(token, logits, mask):
    candidates = mask & np.isfinite(logits)
    if candidates.any():
        assert 0 <= token < N and candidates[token]
    else:
        assert token == NO_CANDIDATE


@SETTINGS
@given(arrays(np.float32, N, elements=_logit_values), _masks, _temperatures, _top_ks, _top_ps, _seeds, st.booleans())
def test_matches_reference_on_arbitrary_inputs(logits, mask, temperature, top_k, top_p, seed, as_uint8):
    fast, ref = _both(logits, mask, temperature, top_k, top_p, seed, np.uint8 if as_uint8 else bool)
    assert fast == ref
    _assert_valid(fast[0], logits, mask)


@SETTINGS
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.001, 0.1, 1.0, 3.0, 30.0]),
    st.sampled_from([0.02, 0.3, 1.0]),
    st.one_of(st.just(1.0), st.floats(0.01, 100.0)),
    _top_ks,
    _top_ps,
    _seeds,
)
def test_matches_reference_on_model_like_logits(np_seed, scale, density, temperature, top_k, top_p, seed):
    """Many distinct weights > 0, so the bucketed top-k/top-p searches really search."""
    rng = np.random.default_rng(np_seed)
    logits = (rng.normal(size=N) * scale).astype(np.float32)
    if rng.random() < 0.3:  # clustered values: many near-ties in one bucket
        logits = (np.round(logits * 4) / 4 + rng.normal(size=N) * 1e-4).astype(np.float32)
    mask = rng.random(N) < density
    fast, ref = _both(logits, mask, temperature, top_k, top_p, seed)
    assert fast == ref
    _assert_valid(fast[0], logits, mask)


def _weights(rng, c, spread):
    """c slot weights like the sampler's: in [0, 1], one exactly 1, some 0 when spread is large."""
    cw = np.exp(-np.abs(rng.normal(size=c)) * spread)
    cw[rng.integers(c)] = 1.0
    return cw


def _brute_prefixes(cw, counting=False):
    """S order and, for each position in it, the prefix measure added in ascending slot order."""
    order = sorted(range(len(cw)), key=lambda j: (-cw[j], j))
    prefix = [float(t + 1) if counting else sum((cw[j] for j in sorted(order[: t + 1])), 0.0) for t in range(len(cw))]
    return order, prefix


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, N), st.booleans(), st.sampled_from([0.0, 0.01, 1.0, 800.0]), st.data())
def test_prefix_search_matches_brute_force(np_seed, c, counting, spread, data):
    """The exact search finds the first slot in S order whose prefix measure reaches the target."""
    cw = _weights(np.random.default_rng(np_seed), c, spread)
    order, prefix = _brute_prefixes(cw, counting)
    target = data.draw(st.one_of(st.sampled_from(prefix), st.floats(0.0, prefix[-1])))
    first = next(t for t in range(c) if prefix[t] >= target)
    found, measure, _ = sampler._first_reaching(cw, c, np.arange(c), c, target, counting, np.zeros(c, np.int64), 0)
    assert (found, measure) == (order[first], prefix[first])


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(2, N), st.sampled_from([0.001, 0.5, 3.0, 800.0]), st.data())
def test_top_p_cut_on_prefix_boundaries(np_seed, c, spread, data):
    """Targets on or one ulp beside an exact prefix sum: where the bucket guess from approximate sums can be
    wrong and the exact check must send the search elsewhere."""
    cw = _weights(np.random.default_rng(np_seed), c, spread)
    order, prefix = _brute_prefixes(cw)
    total = prefix[-1]
    top_p = prefix[data.draw(st.integers(0, c - 1))] / total
    top_p = data.draw(st.sampled_from([top_p, np.nextafter(top_p, 0.0), np.nextafter(top_p, 1.0)]))
    if not 0.0 < top_p < 1.0:
        return
    target = top_p * total
    first = next(t for t in range(c) if prefix[t] >= target)
    low = int(np.argmin(np.where(cw > 0, cw, 2.0)))
    assert sampler._cut(cw, c, low, 0, top_p, total) == (order[first], prefix[first])


def test_rng_matches_splitmix64_test_vector():
    # splitmix64 seeded with 0: first output 0xE220A8397B1DCDAF (Vigna's reference implementation).
    state, u = splitmix64(0)
    assert u == (0xE220A8397B1DCDAF >> 11) * 2.0**-53
    rng = new_rng_state(0)
    assert sampler.next_uniform(rng) == u and int(rng[0]) == state


def test_new_rng_state_takes_any_int_modulo_2_64():
    assert int(new_rng_state(-1)[0]) == 2**64 - 1
    assert int(new_rng_state(2**64 + 5)[0]) == 5
    with pytest.raises(ValueError):
        new_rng_state(1.5)  # type: ignore[arg-type]


def test_same_seed_same_tokens_and_one_draw_per_call():
    rng = np.random.default_rng(7)
    steps = [(rng.normal(size=N).astype(np.float32), rng.random(N) < 0.5) for _ in range(200)]
    settings_cycle = [(1.0, 0, 1.0), (0.0, 0, 1.0), (0.8, 20, 0.9), (2.0, 0, 0.5)]

    def run(seed):
        state = new_rng_state(seed)
        out = []
        for i, (logits, mask) in enumerate(steps):
            t, k, p = settings_cycle[i % 4]
            out.append(sample(logits, mask, t, k, p, state, HOLD))
        return out, int(state[0])

    a, state_a = run(1234)
    assert run(1234) == (a, state_a)
    assert run(1235)[0] != a
    expected_state = 1234
    for _ in steps:  # exactly one draw per call, whatever the path
        expected_state, _ = splitmix64(expected_state)
    assert state_a == expected_state


def test_fallback_when_no_candidate():
    logits = np.zeros(N, dtype=np.float32)
    logits[5] = np.nan
    mask = np.zeros(N, dtype=bool)
    mask[5] = True  # the only allowed token has a NaN logit
    state = new_rng_state(3)
    assert sample(logits, mask, 1.0, 0, 1.0, state, HOLD) == HOLD
    assert sample(logits, mask, 1.0, 0, 1.0, state, NO_CANDIDATE) == NO_CANDIDATE
    assert sample_checked(logits, mask, 1.0, 0, 1.0, state, fallback=1) == (1, True)
    assert int(state[0]) == splitmix64(splitmix64(splitmix64(3)[0])[0])[0]


@SETTINGS
@given(arrays(np.float32, N, elements=_logit_values), _masks, _seeds)
def test_greedy_is_lowest_argmax(logits, mask, seed):
    candidates = mask & np.isfinite(logits)
    token = sample(logits, mask, 0.0, 0, 1.0, new_rng_state(seed), NO_CANDIDATE)
    if candidates.any():
        best = np.max(logits[candidates])
        assert token == int(np.flatnonzero(candidates & (logits == best))[0])
    else:
        assert token == NO_CANDIDATE


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.floats(0.05, 20.0), st.sampled_from([1.0, 0.9, 1e-9]), _seeds)
def test_top_k_1_is_greedy(np_seed, temperature, top_p, seed):
    """Holds whenever distinct logits get distinct weights: logits on a 1/8 grid in [-20, 20] and moderate
    temperatures. (With a huge temperature, near-equal logits can round to the same weight 1.0 and the tie goes to
    the lower token, as documented.)"""
    rng = np.random.default_rng(np_seed)
    logits = (np.round(rng.normal(size=N) * 40) / 8).astype(np.float32)
    mask = rng.random(N) < 0.5
    greedy = sample(logits, mask, 0.0, 0, 1.0, new_rng_state(seed), NO_CANDIDATE)
    assert sample(logits, mask, temperature, 1, top_p, new_rng_state(seed), NO_CANDIDATE) == greedy
    assert sample(logits, mask, temperature, 0, 1e-12, new_rng_state(seed), NO_CANDIDATE) == greedy


def test_frequencies_follow_softmax():
    """Seeded, so it cannot flake: chi-square over 4 tokens, 40,000 draws, against the p = 1e-6 critical value."""
    logits = np.full(N, -np.inf, dtype=np.float32)
    logits[[2, 10, 40, 100]] = np.log([0.1, 0.2, 0.3, 0.4]).astype(np.float32)
    mask = np.ones(N, dtype=bool)
    state = new_rng_state(20240601)
    draws = np.array([sample(logits, mask, 1.0, 0, 1.0, state, HOLD) for _ in range(40_000)])
    counts = np.array([(draws == t).sum() for t in (2, 10, 40, 100)])
    assert counts.sum() == 40_000
    expected = 40_000 * np.array([0.1, 0.2, 0.3, 0.4])
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30.7, (counts, chi2)  # chi-square, 3 degrees of freedom, p = 1e-6


def test_top_p_and_top_k_keep_the_expected_sets():
    logits = np.full(N, -np.inf, dtype=np.float32)
    logits[[3, 4, 5, 6]] = np.log([0.5, 0.3, 0.15, 0.05]).astype(np.float32)
    mask = np.ones(N, dtype=bool)
    state = new_rng_state(99)

    def seen(top_k, top_p):
        return {sample(logits, mask, 1.0, top_k, top_p, state, HOLD) for _ in range(2000)}

    assert seen(0, 0.5) == {3}
    assert seen(0, 0.6) == {3, 4}
    assert seen(0, 0.9) == {3, 4, 5}
    assert seen(0, 1.0) == {3, 4, 5, 6}
    assert seen(2, 1.0) == {3, 4}
    # top-p applies to the mass renormalised over the top-k survivors: 0.82 of 0.95 is reached by 0.5 + 0.3.
    assert seen(3, 0.82) == {3, 4}
    assert seen(0, 0.82) == {3, 4, 5}


def test_sample_checked_validates_and_converts():
    state = new_rng_state(1)
    logits = np.linspace(-1, 1, N)  # float64 and a list mask are converted
    assert sample_checked(logits, [True] * N, 0.0, 0, 1.0, state) == (N - 1, False)
    for bad in (
        dict(logits=np.zeros(N + 1)),
        dict(allowed=np.ones(N - 1, bool)),
        dict(temperature=math.nan),
        dict(top_p=math.nan),
        dict(top_k=1.5),
        dict(fallback=N),
        dict(rng_state=np.zeros(1, np.int64)),
    ):
        args = dict(logits=np.zeros(N), allowed=np.ones(N, bool), temperature=1.0, top_k=0, top_p=1.0,
                    rng_state=state, fallback=HOLD)
        args.update(bad)
        with pytest.raises(ValueError):
            sample_checked(**args)


def test_hot_path_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        sample(np.zeros(N, np.float32), np.ones(N - 1, bool), 1.0, 0, 1.0, new_rng_state(0), HOLD)


def test_warm_up_runs_every_path_without_touching_caller_state():
    state = new_rng_state(5)
    sampler.warm_up()
    assert int(state[0]) == 5


@SETTINGS
@given(arrays(np.float32, N, elements=_logit_values), _masks, _temperatures, _top_ks, _top_ps, _seeds,
       st.integers(1, 6))
def test_repeated_draws_are_the_calls_in_a_row(logits, mask, temperature, top_k, top_p, seed, r):
    """``sample_repeated`` computes the distribution once and draws ``r`` tokens: each what ``sample`` gives when
    called r times in a row from the same state, which ends where those calls leave it."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    s_many, s_one = new_rng_state(seed), new_rng_state(seed)
    out = np.empty(r, dtype=np.int64)
    sampler.sample_repeated(logits, mask, temperature, top_k, top_p, s_many, NO_CANDIDATE, out)
    assert out.tolist() == [sample(logits, mask, temperature, top_k, top_p, s_one, NO_CANDIDATE) for _ in range(r)]
    assert int(s_many[0]) == int(s_one[0])
