"""A held-out split that is held out by *content*, not only by tune: folk collections repeat tunes (the same reel
in O'Neill's and in Ryan's, a variant in another key, a chorale melody harmonised twice), so a split by tune puts
copies of test tunes into training.

Rule: two tunes that share a run of ``window_steps`` steps — the same rhythm and the same pitches up to one
transposition — belong to one *content group*, and a group lies wholly in one split. ``window_steps`` defaults to
32 (4 bars of 2/4, the shortest folk bar): a shared run of 4 bars of any meter of 2/4 or longer contains one such
window, so it is found. Runs are compared from each onset, with pitches taken relative to the run's first note.
Windows with fewer than ``MIN_WINDOW_ONSETS`` onsets (a long note and rests) are too plain to mean a copy and are
ignored.

Groups are formed by union-find over shared window hashes; then whole groups are dealt to test / valid / train in
a seeded random order until each of test and valid holds its share of tunes (groups larger than ``max_held_group``
always go to train, so one formulaic family cannot swallow the test set). Pure functions; deterministic for a
seed.
"""

from __future__ import annotations

import numpy as np

from liveperf.music import melody

DEFAULT_WINDOW_STEPS = 32
MIN_WINDOW_ONSETS = 4


def window_keys(tokens: np.ndarray, window_steps: int = DEFAULT_WINDOW_STEPS) -> set[bytes]:
    """Transposition-free keys of every ``window_steps`` run that starts on an onset (with enough onsets)."""
    t = np.asarray(tokens, dtype=np.int16)
    n = t.size
    is_on = t >= melody.PITCH_OFFSET
    onsets = np.flatnonzero(is_on)
    keys: set[bytes] = set()
    if n < window_steps:
        return keys
    cum = np.concatenate([[0], np.cumsum(is_on)])
    for i in onsets[onsets <= n - window_steps]:
        if cum[i + window_steps] - cum[i] < MIN_WINDOW_ONSETS:
            continue
        w = t[i:i + window_steps].copy()
        on = w >= melody.PITCH_OFFSET
        w[on] -= t[i] - 200  # relative pitch, shifted clear of HOLD/OFF (0, 1)
        keys.add(w.tobytes())
    return keys


def content_groups(tunes: list[np.ndarray], window_steps: int = DEFAULT_WINDOW_STEPS) -> np.ndarray:
    """Group id (int) per tune: tunes that share a window (directly or through others) get the same id."""
    parent = list(range(len(tunes)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first_owner: dict[bytes, int] = {}
    for i, t in enumerate(tunes):
        for k in window_keys(t, window_steps):
            j = first_owner.setdefault(k, i)
            if j != i:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(len(tunes))], dtype=np.int64)


def split_by_content(tunes: list[np.ndarray], seed: int, fractions=(0.90, 0.05, 0.05),
                     window_steps: int = DEFAULT_WINDOW_STEPS, max_held_group: int | None = None) -> dict:
    """Indices of train / valid / test tunes (sorted arrays) with no content group across two splits, plus
    ``groups`` (group id per tune) and ``stats`` (group sizes, tunes moved by the rule)."""
    groups = content_groups(tunes, window_steps)
    n = len(tunes)
    ids, sizes = np.unique(groups, return_counts=True)
    if max_held_group is None:
        max_held_group = max(2, int(0.002 * n))
    order = np.random.default_rng(seed).permutation(ids.size)
    want = {"test": int(round(fractions[2] * n)), "valid": int(round(fractions[1] * n))}
    got = {"test": 0, "valid": 0}
    where: dict[int, str] = {}
    for gi in order:
        g, size = int(ids[gi]), int(sizes[gi])
        target = "train"
        if size <= max_held_group:
            for name in ("test", "valid"):
                if got[name] + size <= want[name]:
                    target = name
                    got[name] += size
                    break
        where[g] = target
    split = {name: np.array([i for i in range(n) if where[int(groups[i])] == name], dtype=np.int64)
             for name in ("train", "valid", "test")}
    split["groups"] = groups
    split["stats"] = {
        "rule": f"tunes sharing a {window_steps}-step run (any transposition, >= {MIN_WINDOW_ONSETS} onsets) "
                f"share a split; groups over {max_held_group} tunes go to train",
        "tunes": n, "groups": int(ids.size), "largest_group": int(sizes.max()) if sizes.size else 0,
        "tunes_in_shared_groups": int(sizes[sizes > 1].sum()),
        "sizes": {name: int(split[name].size) for name in ("train", "valid", "test")},
    }
    return split


def shared_with(train: list[np.ndarray], test: list[np.ndarray], window_steps: int) -> float:
    """Share of ``test`` tunes that share a ``window_steps`` run with some ``train`` tune (the leak a split has)."""
    seen: set[bytes] = set()
    for t in train:
        seen |= window_keys(t, window_steps)
    return float(np.mean([bool(window_keys(t, window_steps) & seen) for t in test])) if test else 0.0
