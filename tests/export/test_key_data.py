"""Counting bars for the key finder's measurements (``export.key_data``): "after N bars" starts at the first
downbeat, whatever the pickup."""

import numpy as np
from hypothesis import given, strategies as st

from export.key_data import bar_aligned, first_downbeat_bar
from liveperf.music.melody import HOLD, OFF, on


@given(bar=st.sampled_from([6, 8, 12, 16, 24]), pickup=st.integers(0, 40))
def test_the_first_downbeat_lands_on_the_counted_bar_line(bar, pickup):
    tokens = np.array([on(62)] * pickup + [on(67)] + [HOLD] * (3 * bar), dtype=np.int64)
    aligned = bar_aligned(tokens, pickup, bar)
    downbeat = first_downbeat_bar(pickup, bar)
    assert aligned[downbeat * bar] == on(67)  # the first downbeat's note
    assert (aligned[:downbeat * bar] != on(67)).all()
    assert downbeat == (0 if pickup == 0 else -(-pickup // bar))


def test_a_one_beat_pickup_sits_after_silence_in_bar_0():
    tokens = np.array([on(62), HOLD, HOLD, HOLD, on(67)] + [HOLD] * 15, dtype=np.int64)
    aligned = bar_aligned(tokens, 4, 16)
    assert first_downbeat_bar(4, 16) == 1
    assert aligned[:12].tolist() == [OFF] * 12 and aligned[12] == on(62) and aligned[16] == on(67)
