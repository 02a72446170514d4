"""The content-clean split (``export.clean_split``) and the training-copy index (``export.quality.copies``)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("torch")  # export/ is the export extra's business

from export.clean_split import content_groups, split_by_content, window_keys  # noqa: E402
from export.quality.copies import CopyIndex  # noqa: E402
from liveperf.music import melody  # noqa: E402
from liveperf.music.melody import HOLD, OFF, on  # noqa: E402

tokens = st.sampled_from([HOLD, HOLD, OFF] + [on(p) for p in range(55, 80)])


def line(rng: np.random.Generator, n: int) -> np.ndarray:
    out = rng.choice([HOLD, HOLD, on(60), on(62), on(64), on(65), on(67), on(69)], size=n)
    out[0] = on(60)
    return out.astype(np.int64)


def test_a_transposed_copy_of_4_bars_shares_a_group_and_a_split():
    rng = np.random.default_rng(0)
    tunes = [line(rng, 96) for _ in range(40)]
    shared = tunes[3][10:60].copy()
    tunes[17] = np.concatenate([line(rng, 20), melody.transpose_tokens(shared, 5), line(rng, 20)])
    groups = content_groups(tunes, 32)
    assert groups[3] == groups[17]
    for seed in range(5):
        split = split_by_content(tunes, seed, (0.5, 0.25, 0.25), 32)
        where = {i: name for name in ("train", "valid", "test") for i in split[name].tolist()}
        assert where[3] == where[17] and sorted(where) == list(range(40))


def test_plain_windows_do_not_join_tunes():
    """A long note and rests (fewer than 4 onsets in the window) is no passage: two tunes that share only that
    stay apart."""
    a = np.array([on(60)] + [HOLD] * 40 + [on(62), on(64)], dtype=np.int64)
    b = np.array([on(67)] + [HOLD] * 40 + [on(65), on(60)], dtype=np.int64)
    assert not window_keys(a, 32) & window_keys(b, 32)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(tokens, min_size=0, max_size=70), min_size=2, max_size=12), st.integers(0, 3))
def test_no_window_crosses_the_split(tunes, seed):
    tunes = [np.array(t, dtype=np.int64) for t in tunes]
    split = split_by_content(tunes, seed, (0.6, 0.2, 0.2), 16, max_held_group=3)
    seen = {name: set().union(*[window_keys(tunes[i], 16) for i in split[name]]) for name in ("train", "valid", "test")}
    assert not seen["train"] & seen["test"] and not seen["train"] & seen["valid"] and not seen["valid"] & seen["test"]
    assert sorted(np.concatenate([split[n] for n in ("train", "valid", "test")]).tolist()) == list(range(len(tunes)))


def test_copy_index_finds_the_longest_copied_run_in_any_key():
    rng = np.random.default_rng(1)
    train = [line(rng, 128) for _ in range(20)]
    index = CopyIndex(train, lengths=(8, 16, 32, 64))
    copied = melody.transpose_tokens(train[4][8:48], -3)  # 40 steps of a training tune, a minor third down
    fresh = np.concatenate([line(rng, 30), copied, line(rng, 30)])
    assert index.longest_copy(fresh) == 32
    assert index.longest_copy(line(np.random.default_rng(99), 64)) < 32
