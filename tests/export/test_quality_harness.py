"""The music-quality harness's live path (``export.quality.live``): a setlist song, the shipped models, the engine
and modes in virtual time, measured off the virtual wire — the same objects a show builds."""

import numpy as np
import pytest

pytest.importorskip("torch")  # export/ is the export extra's business

from export.quality import live, measures  # noqa: E402
from liveperf.music.melody import HOLD, on  # noqa: E402
from liveperf.modes.build import SongModels  # noqa: E402

CALL = np.array([on(62), HOLD, on(64), HOLD, on(66), HOLD, on(67), HOLD, on(69), HOLD, HOLD, HOLD, on(67), HOLD,
                 on(66), HOLD, on(64), HOLD, on(62), HOLD, on(64), HOLD, on(66), HOLD, on(62), HOLD, HOLD, HOLD,
                 HOLD, HOLD, HOLD, HOLD])


def run(candidates: int):
    song = live.make_song(key="D major", meter="4/4", mode="call_response", seed=3, answer_candidates=candidates)
    models = SongModels.load(song, None, cache={})
    played = live.play(song, models, live.performer_events(CALL, 0, 125_000_000), 80)
    engine = played.engine
    return played, engine.modes["call_response"], song


def test_a_planned_answer_comes_off_the_wire_deterministically():
    a, mode, song = run(16)
    b, _, _ = run(16)
    assert a.sent == b.sent and mode.stats.plans == 1 and mode.stats.responses == 1
    answer = a.partner[32:80]
    fig = measures.answer_figures(CALL, 0, answer, 32, song.key)
    assert fig.answered and fig.in_key == 1.0 and fig.restrike_run <= 3
    assert np.array_equal(answer[mode.last_plan.start - 32:][:4], mode.last_plan.tokens[:4])


def test_the_step_by_step_answer_is_still_there():
    played, mode, _ = run(0)
    assert mode.stats.plans == 0 and mode.stats.responses == 1
    assert (played.partner[32:] >= 2).any()
