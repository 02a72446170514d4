"""A plain-Python twin of ``liveperf.music.sampler``: the same semantics and the same random stream, written for reading.

The tests compare it with the compiled sampler token for token, so it follows the numbered semantics in
``liveperf.music.sampler``'s docstring literally: sort the candidates, take prefixes, add floats in ascending token
order. It uses Python floats (IEEE float64) and ``math.exp``, exactly the operations the compiled code performs, so
the two agree bit for bit rather than approximately. Far too slow for the engine (hundreds of microseconds per
call); for tests and for anyone checking what the sampler does. No threads, no shared state; ``rng_state`` is the
caller's 1-element uint64 array, updated in place.
"""

from __future__ import annotations

import math

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def splitmix64(state: int) -> tuple[int, float]:
    """One splitmix64 step on a Python int: returns (new state, uniform float in [0, 1) from the top 53 bits)."""
    state = (state + GOLDEN) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    z = z ^ (z >> 31)
    return state, (z >> 11) * 2.0**-53


def next_uniform_reference(rng_state: np.ndarray) -> float:
    """Advance ``rng_state`` (uint64 array, element 0) by one draw and return the uniform float."""
    state, u = splitmix64(int(rng_state[0]))
    rng_state[0] = np.uint64(state)
    return u


def _sum_in_token_order(tokens, w: dict[int, float]) -> float:
    """Sum of w over ``tokens``, added one by one in ascending token order (float64 rounding at each step)."""
    total = 0.0
    for i in sorted(tokens):
        total += w[i]
    return total


def kept_tokens(logits, candidates, temperature: float, top_k: int, top_p: float) -> tuple[list[int], dict]:
    """Steps 5-8 (temperature > 0): the tokens left after top-k and top-p, most probable first, and the softmax
    numerators ``w`` of every candidate."""
    m = max(logits[i] for i in candidates)
    # 5-6: softmax numerators, most probable first (ties: lower token first).
    w = {i: math.exp((logits[i] - m) / temperature) for i in candidates}
    order = sorted(candidates, key=lambda i: (-w[i], i))

    # 7: top-k.
    kept = order[:top_k] if 0 < top_k < len(order) else order

    # 8: top-p, over the top-k survivors: the shortest prefix whose mass reaches top_p of theirs.
    if 0.0 < top_p < 1.0:
        target = top_p * _sum_in_token_order(kept, w)
        for length in range(1, len(kept) + 1):
            if _sum_in_token_order(kept[:length], w) >= target:
                kept = kept[:length]
                break
    return kept, w


def sample_reference(logits, allowed, temperature: float, top_k: int, top_p: float, rng_state, fallback: int) -> int:
    """Same contract as ``liveperf.music.sampler.sample``: a token, or ``fallback`` when no token is a candidate."""
    logits = [float(x) for x in np.asarray(logits, dtype=np.float32)]
    allowed = [bool(a) for a in np.asarray(allowed)]
    temperature, top_p = float(temperature), float(top_p)

    # 1-3: candidates, one draw always, nothing to choose from.
    candidates = [i for i, x in enumerate(logits) if allowed[i] and math.isfinite(x)]
    u = next_uniform_reference(rng_state)
    if not candidates:
        return fallback

    # 4: greedy.
    m = max(logits[i] for i in candidates)
    if not temperature > 0.0:
        return min(i for i in candidates if logits[i] == m)

    kept, w = kept_tokens(logits, candidates, temperature, top_k, top_p)

    # 9: inverse CDF in ascending token order.
    threshold = u * _sum_in_token_order(kept, w)
    running = 0.0
    for i in sorted(kept):
        running += w[i]
        if running > threshold:
            return i
    return max(i for i in kept if w[i] > 0.0)

