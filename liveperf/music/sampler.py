"""The token sampler: one masked, temperature / top-k / top-p draw from a model's logits, compiled with numba.

Hot path: the engine thread calls ``sample`` once per step per voice. It is ``@numba.njit(cache=True, nogil=True)``
with explicit signatures, so it is compiled (or loaded from numba's on-disk cache) at import, releases the GIL while
it runs, allocates nothing on the heap (scratch lives on the native stack) and never touches a global RNG.
``sample_checked`` is a validating wrapper for non-hot callers (tools, tests, previews).
``liveperf.music.sampler_reference`` is a plain-Python twin: the tests require both to agree token for token.

Random numbers: splitmix64. The state is a 1-element ``np.uint64`` array from ``new_rng_state(seed)``, owned by the
caller (one per voice/stream), mutated in place, never shared by threads calling at the same time. Every call takes
exactly one draw, whatever path it takes (greedy, fallback, one candidate), so changing temperature or mask at one
step never shifts the random stream of later steps.

Semantics, exactly (float64 throughout, sums added in the order stated, so the reference matches bit for bit):

1. candidates C = {i : allowed[i] != 0 and logits[i] is finite}; NaN and +-inf logits are never sampled.
2. u = the next draw in [0, 1), taken on every call.
3. C empty -> return ``fallback``.
4. m = max logit over C. ``not temperature > 0`` (<= 0 or NaN) -> greedy: the lowest token in C with logit m.
5. w[i] = exp((float64(logits[i]) - m) / temperature) for i in C: softmax numerators, w = 1 at the max, so big
   logits or tiny temperatures cannot overflow. A w that underflows to 0 is never drawn.
6. S = C ordered by w descending, ties by lower token ("most probable first"). Near-equal logits can round to
   equal w (e.g. at huge temperatures); the lower token then comes first, even before the argmax.
7. 0 < top_k < |C|: keep K = the first top_k of S; otherwise K = C (top_k <= 0 disables).
8. 0 < top_p < 1: keep the shortest prefix of S within K whose mass is >= top_p * mass(K) (at least one token).
   The mass of a set of tokens is the sum of their w added in ascending token order, not in S order: it still
   never decreases as the prefix grows, and the compiled code can then find the prefix by search, not by sorting.
   top_p outside (0, 1), or NaN, disables; with top_k, top_p applies to the mass renormalised over K.
9. inverse CDF over the kept tokens in ascending token order: return the first whose running sum of w exceeds
   u * mass(kept); if rounding leaves none, the last kept token with w > 0.

Units: logits are raw model scores (natural-log scale); temperature > 0 scales them (1 = the model's own
distribution); top_p is a probability. Costs measured on the 2-core dev machine: importing this module compiles
everything in ~5 s with a cold numba cache (once per install) and takes ~0.5 s with a warm one (plus ~0.3 s for
numba itself); the first call in a process then takes ~0.15 ms (``warm_up()`` pays it early), later calls from
Python ~1 us (greedy), ~2.2 us (temperature only), ~3 us (top_p 0.9), ~2.7 us (top_k 20) median, of which ~0.8 us
is numba's dispatch.
"""

from __future__ import annotations

import math
import numbers

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from liveperf.music.melody import HOLD, NUM_CLASSES

#: The most classes ``sample`` accepts (scratch is sized for it); the melody vocabulary.
MAX_CLASSES = NUM_CLASSES
#: A ``fallback`` no token equals: pass it to tell "no candidate" apart from a sampled token.
NO_CANDIDATE = -1
_SLOTS = MAX_CLASSES + 1  # the weights' scratch: a slot per class and the kept weights' sum

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_POW_M53 = 1.0 / 9007199254740992.0  # 2**-53

_JIT = dict(cache=True, nogil=True)
_NB, _NB1 = 128, 129  # _cut: buckets 0.._NB-1 for w > 0, bucket _NB for w == 0
_I, _F, _F64, _I64 = types.int64, types.float64, types.float64[::1], types.int64[::1]  # signature shorthands


def new_rng_state(seed: int) -> np.ndarray:
    """A fresh splitmix64 state for ``seed`` (any Python int, taken modulo 2**64), owned by the caller."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return np.array([int(seed) & _MASK64], dtype=np.uint64)


@intrinsic
def _stack_buffer(typingctx, count, dtype):
    """Pointer to ``count`` (a compile-time constant) uninitialised elements on the native stack."""
    if not isinstance(count, types.IntegerLiteral):
        raise TypingError("_stack_buffer needs a literal element count")
    elt = dtype.dtype
    n = count.literal_value

    def codegen(context, builder, signature, args):
        size = context.get_constant(types.intp, n)
        return cgutils.alloca_once(builder, context.get_value_type(elt), size=size)

    return types.CPointer(elt)(count, dtype), codegen


@numba.njit(_F(types.uint64[::1]), **_JIT)
def next_uniform(rng_state):
    """Advance the splitmix64 state in place; return a float64 in [0, 1) (53 random bits)."""
    s = rng_state[0] + _GOLDEN
    rng_state[0] = s
    z = (s ^ (s >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * _TWO_POW_M53


@numba.njit(types.boolean(_F64, _I, _F, _I), **_JIT)
def _at_or_before(cw, a, wb, b):
    """Whether slot a is at or before slot b (weight wb) in S order (w descending, then index); branch-free."""
    x = cw[a]
    return (x > wb) | ((x == wb) & (a <= b))


@numba.njit(types.void(_F64, _I64, _I), **_JIT)
def _sort_few(cw, act, n):
    """Insertion-sort act[:n] into S order (meant for a handful of slots)."""
    for t in range(1, n):
        a, r = act[t], t
        while r > 0 and not _at_or_before(cw, act[r - 1], cw[a], a):
            act[r] = act[r - 1]
            r -= 1
        act[r] = a


@numba.njit(types.UniTuple(_F, 4)(_F64, _I, _I, _I, _I, types.boolean, _I64, _I), **_JIT)
def _probe(cw, c, q0, q1, q2, counting, key, kb):
    """One pass: the prefix measures of slots q0, q1, q2 (see ``_first_reaching``) and the sum of w over the
    slots with key < kb, all added in ascending slot order."""
    w0, w1, w2 = cw[q0], cw[q1], cw[q2]
    s0 = s1 = s2 = e = 0.0
    for j in range(c):
        v = 1.0 if counting else cw[j]
        s0 += v if _at_or_before(cw, j, w0, q0) else 0.0
        s1 += v if _at_or_before(cw, j, w1, q1) else 0.0
        s2 += v if _at_or_before(cw, j, w2, q2) else 0.0
        e += cw[j] if key[j] < kb else 0.0
    return s0, s1, s2, e


@numba.njit(types.Tuple((_I, _F, _F))(_F64, _I, _I64, _I, _F, types.boolean, _I64, _I), **_JIT)
def _first_reaching(cw, c, act, na, target, counting, key, kb):
    """Search ``act[:na]`` (overwritten) for the first slot in S order whose prefix measure reaches ``target``.

    The prefix measure of slot q is the sum of w (or, if ``counting``, the number of slots) over all slots at or
    before q in S order, added in ascending slot order. It never decreases along S (adding a term >= 0 anywhere in
    a float sum of terms >= 0 cannot lower it), so each round measures three pivots (quartiles of up to 7 sampled
    slots) in one pass and keeps the slots between two of them. Returns (slot or -1 if none reaches, its measure,
    the sum of w over the slots with key < kb, from the first pass).
    """
    smp = numba.carray(_stack_buffer(8, numba.int64), 8)
    best, s_best, e_lo, first = -1, 0.0, 0.0, True
    while na > 0:
        ns, step = min(na, 7), (na - 1) // 6 if na > 7 else 1
        for t in range(ns):
            smp[t] = act[t * step]
        _sort_few(cw, smp, ns)
        q0, q1, q2 = smp[ns // 4], smp[ns // 2], smp[(3 * ns) // 4]
        s0, s1, s2, e = _probe(cw, c, q0, q1, q2, counting, key, kb)
        if first:
            e_lo, first = e, False
        lo, hi = -1, q0  # keep the slots strictly after lo and strictly before hi (-1: unbounded)
        if s0 >= target:
            best, s_best = q0, s0
        elif s1 >= target:
            lo, hi, best, s_best = q0, q1, q1, s1
        elif s2 >= target:
            lo, hi, best, s_best = q1, q2, q2, s2
        else:
            lo, hi = q2, -1
        wlo, whi = cw[max(lo, 0)], cw[max(hi, 0)]
        kept = 0
        for t in range(na):
            a = act[t]
            act[kept] = a
            after_lo = (lo < 0) | (not _at_or_before(cw, a, wlo, lo))
            before_hi = (hi < 0) | (_at_or_before(cw, a, whi, hi) & (a != hi))
            kept += after_lo & before_hi
        na = kept
    return best, s_best, e_lo


@numba.njit(_I(_I64, _I, _I, _I64), **_JIT)
def _gather(key, c, b, act):
    """act[:n] = the slots in bucket b (ascending); returns n."""
    n = 0
    for j in range(c):
        act[n] = j
        n += key[j] == b
    return n


@numba.njit(types.Tuple((_I, _F))(_F64, _I, _I, _I, _F, _F), **_JIT)
def _cut(cw, c, low, top_k, top_p, zsum):
    """Apply top-k, then top-p. Returns (cut, total): the kept slots are those at or before slot ``cut`` in S
    order (-1: all), ``total`` the sum of their w in ascending slot order.

    Slots are first put in buckets by the float bits of w (key[j] < _NB, smaller = more probable, equal w =
    equal key, _NB for w == 0; shifted so that ``low``, the slot of the smallest w > 0, lands below _NB). Bucket
    counts are exact, so they find the top_k-th slot's bucket directly; bucket sums are approximate, so the bucket
    they point to for top-p is checked with exact sums and, if rounding misled it, the search covers every slot.
    """
    act = numba.carray(_stack_buffer(MAX_CLASSES, numba.int64), MAX_CLASSES)
    key = numba.carray(_stack_buffer(MAX_CLASSES, numba.int64), MAX_CLASSES)
    cnt = numba.carray(_stack_buffer(_NB1, numba.int64), _NB1)
    bsum = numba.carray(_stack_buffer(_NB1, numba.float64), _NB1)
    bits, one = cw.view(np.int64), np.int64(0x3FF0000000000000)  # 1.0; every w is in [0, 1]
    span, shift = one - bits[low], 0
    while (span >> shift) >= _NB:
        shift += 1
    cnt[:] = 0
    bsum[:] = 0.0
    for j in range(c):
        k = (one - bits[j]) >> shift if bits[j] > 0 else _NB
        key[j] = k
        cnt[k] += 1
        bsum[k] += cw[j]

    cut, total = -1, zsum
    if top_k > 0 and top_k < c:
        before, b = 0, 0
        while b < _NB and before + cnt[b] < top_k:
            before += cnt[b]
            b += 1
        if b < _NB:  # else: no more than top_k slots with w > 0, keep them all
            nm = _gather(key, c, b, act)
            if nm <= 8:  # sort the few slots of the bucket and count into it
                _sort_few(cw, act, nm)
                cut = act[top_k - before - 1]
            else:
                cut = _first_reaching(cw, c, act, nm, np.float64(top_k), True, key, 0)[0]
            total = 0.0
            for j in range(c):
                total += cw[j] if _at_or_before(cw, j, cw[cut], cut) else 0.0
    if top_p > 0.0 and top_p < 1.0:
        target = top_p * total
        if target <= 1.0:  # the first slot in S order (the lowest token with w == 1) reaches it alone
            cut = 0
            while cw[cut] != 1.0:
                cut += 1
            return cut, 1.0
        acc, b = 0.0, 0
        while b < _NB - 1 and acc + bsum[b] < target:
            acc += bsum[b]
            b += 1
        nm = _gather(key, c, b, act)
        if nm == 0:  # only when rounding kept the approximate sums below the target
            found, s, e_lo = -1, 0.0, 0.0
        elif nm <= 3:  # measure them all, and the sum before the bucket, in one pass
            _sort_few(cw, act, nm)
            q0, q1, q2 = act[0], act[min(1, nm - 1)], act[nm - 1]
            s0, s1, s2, e_lo = _probe(cw, c, q0, q1, q2, False, key, b)
            found, s = (q0, s0) if s0 >= target else (q1, s1) if s1 >= target else (q2, s2)
            found = found if s >= target else -1
        else:
            found, s, e_lo = _first_reaching(cw, c, act, nm, target, False, key, b)
        if found < 0 or e_lo >= target:  # the answer is not in bucket b after all
            for j in range(c):
                act[j] = j
            found, s, e_lo = _first_reaching(cw, c, act, c, target, False, key, 0)
        if found >= 0:
            cut, total = found, s
    return cut, total


@numba.njit([types.UniTuple(_I, 3)(types.float32[::1], mask, _F, _I, _F, _I64, _F64)
             for mask in (types.boolean[::1], types.uint8[::1])], **_JIT)
def _weights(logits, allowed, temperature, top_k, top_p, ci, cw):  # pragma: no cover (compiled)
    """The distribution ``sample`` draws from, into the caller's slots: ``ci[:c]`` the candidate tokens in ascending
    order, ``cw[:c]`` their weights w (0 <= w <= 1, the best 1), after top-k and top-p. Returns (c, best, cut):
    c = 0 no candidate; ``best`` the most probable token (the answer at c == 1 or temperature 0, then ``cut`` is
    -2); else ``cut`` the last kept slot in S order (-1: all), ``cw[c]`` holding the kept weights' sum."""
    n = logits.shape[0]
    c = 0
    best = -1
    m = -np.inf
    for i in range(n):
        x = np.float64(logits[i])
        candidate = (allowed[i] != 0) & math.isfinite(x)
        ci[c] = i
        c += candidate
        if candidate and x > m:
            m = x
            best = i
    if c <= 1 or not temperature > 0.0:
        return c, best, -2
    zsum, wmin, low = 0.0, 2.0, 0  # low: the slot with the smallest w > 0
    for j in range(c):
        w = math.exp((np.float64(logits[ci[j]]) - m) / temperature)
        cw[j] = w
        zsum += w
        if w > 0.0 and w < wmin:
            wmin, low = w, j
    cut, total = -1, zsum  # kept: the slots at or before slot `cut` in S order (-1: all)
    if (top_k > 0 and top_k < c) or (top_p > 0.0 and top_p < 1.0):
        cut, total = _cut(cw, c, low, top_k, top_p, zsum)
    cw[c] = total
    return c, best, cut


@numba.njit(_I(_F, _I64, _F64, _I, _I), **_JIT)
def _pick(u, ci, cw, c, cut):  # pragma: no cover (compiled)
    """The token at uniform ``u`` of ``_weights``' distribution."""
    wc = cw[cut] if cut >= 0 else -1.0
    threshold = u * cw[c]
    run = 0.0
    last = 0
    for j in range(c):
        if _at_or_before(cw, j, wc, cut):
            run += cw[j]
            if cw[j] > 0.0:
                last = j
            if run > threshold:
                return ci[j]
    return ci[last]


_SIGNATURES = [
    _I(types.float32[::1], mask, _F, _I, _F, types.uint64[::1], _I)
    for mask in (types.boolean[::1], types.uint8[::1])
]


@numba.njit(_SIGNATURES, **_JIT)
def sample(logits, allowed, temperature, top_k, top_p, rng_state, fallback):
    """Hot path: one token per the module docstring, or ``fallback`` when no token is a candidate.

    logits float32 (n,), allowed bool or uint8 (n,), both C-contiguous, n <= 130; temperature, top_p float; top_k
    int; rng_state a uint64 array from ``new_rng_state``, advanced in place by exactly one draw; fallback an int
    (e.g. HOLD; pass ``NO_CANDIDATE`` to detect and count fallbacks yourself). Raises ValueError on mismatched
    lengths. Called by the engine thread; releases the GIL; allocates nothing on the heap.
    """
    n = logits.shape[0]
    if allowed.shape[0] != n or n > MAX_CLASSES or rng_state.shape[0] < 1:
        raise ValueError("sample: logits and allowed must have the same length <= 130; rng_state length >= 1")
    u = next_uniform(rng_state)
    # Slots: the candidates in ascending token order; ci[j] is the token, cw[j] its weight w (0 <= w <= 1).
    ci = numba.carray(_stack_buffer(MAX_CLASSES, numba.int64), MAX_CLASSES)
    cw = numba.carray(_stack_buffer(_SLOTS, numba.float64), _SLOTS)
    c, best, cut = _weights(logits, allowed, temperature, top_k, top_p, ci, cw)
    if c == 0:
        return fallback
    if cut == -2:
        return best
    return _pick(u, ci, cw, c, cut)


@numba.njit(types.void(types.float32[::1], types.boolean[::1], _F, _I, _F, types.uint64[::1], _I, _I64), **_JIT)
def sample_repeated(logits, allowed, temperature, top_k, top_p, rng_state, fallback, out):
    """``out.size`` draws from one step's logits, each exactly what ``sample`` returns when called that many times
    in a row (one uniform each, in order), the distribution computed once: a phrase's candidates drawn from one
    code share their logits. Engine thread; allocates nothing on the heap."""
    n = logits.shape[0]
    if allowed.shape[0] != n or n > MAX_CLASSES or rng_state.shape[0] < 1:
        raise ValueError("sample_repeated: logits and allowed must have the same length <= 130")
    ci = numba.carray(_stack_buffer(MAX_CLASSES, numba.int64), MAX_CLASSES)
    cw = numba.carray(_stack_buffer(_SLOTS, numba.float64), _SLOTS)
    c, best, cut = _weights(logits, allowed, temperature, top_k, top_p, ci, cw)
    for k in range(out.size):
        u = next_uniform(rng_state)
        out[k] = fallback if c == 0 else best if cut == -2 else _pick(u, ci, cw, c, cut)


def warm_up() -> None:
    """Run every compiled path once (any thread, before the show): a process's first call costs ~0.15 ms."""
    state, logits = new_rng_state(0), np.linspace(-2.0, 2.0, MAX_CLASSES).astype(np.float32)
    for mask in (np.ones(MAX_CLASSES, dtype=bool), np.ones(MAX_CLASSES, dtype=np.uint8)):
        for temperature, top_k, top_p in ((0.0, 0, 1.0), (1.0, 0, 1.0), (1.0, 20, 0.9), (1.0, 0, 0.5)):
            sample(logits, mask, temperature, top_k, top_p, state, HOLD)


def sample_checked(logits, allowed, temperature, top_k, top_p, rng_state, fallback=HOLD) -> tuple[int, bool]:
    """Validating wrapper for non-hot callers: returns ``(token, used_fallback)``.

    Converts logits to float32 and the mask to bool (copies only if needed; the caller's arrays are not modified),
    checks shapes, that temperature and top_p are not NaN, that ``fallback`` is a token, and that ``rng_state`` is
    a uint64 state (which it advances in place by one draw). Raises ``ValueError`` naming the bad argument.
    """
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    allowed = np.ascontiguousarray(allowed, dtype=bool)
    if logits.ndim != 1 or logits.shape[0] > MAX_CLASSES:
        raise ValueError(f"logits must be 1-D with at most {MAX_CLASSES} entries, got shape {logits.shape}")
    if allowed.shape != logits.shape:
        raise ValueError(f"allowed shape {allowed.shape} differs from logits shape {logits.shape}")
    if not isinstance(rng_state, np.ndarray) or rng_state.dtype != np.uint64 or rng_state.shape[:1] in ((), (0,)):
        raise ValueError("rng_state must be a 1-D uint64 array from new_rng_state(seed)")
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if not isinstance(value, numbers.Real) or math.isnan(value):
            raise ValueError(f"{name} must be a real number, got {value!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
        raise ValueError(f"top_k must be an integer (0 = off), got {top_k!r}")
    if isinstance(fallback, bool) or not isinstance(fallback, numbers.Integral) or not 0 <= fallback < NUM_CLASSES:
        raise ValueError(f"fallback must be a token 0..{NUM_CLASSES - 1}, got {fallback!r}")
    k = min(max(int(top_k), 0), MAX_CLASSES)
    token = sample(logits, allowed, float(temperature), k, float(top_p), rng_state, NO_CANDIDATE)
    if token == NO_CANDIDATE:
        return int(fallback), True
    return int(token), False
