"""Representation v2 in the runtime: the melody stepper's position and lookback inputs, its batched fork (answer
planning), and the duet's anticipation — on the shipped models."""

import numpy as np
from hypothesis import given, settings, strategies as st

from liveperf.music import melody
from liveperf.music.melody import HOLD, OFF, on
from liveperf.models.onnx_model import load_model, resolve_model_path
from liveperf.models.phrase_models import DuetStepper
from liveperf.models.step_model import OnnxStepper
from liveperf.modes.anticipation import Anticipation


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(melody.METERS + ((5, 4), (7, 8))), st.integers(-200, 2000))
def test_position_codes_split_back_into_meter_and_bar_position(meter, step):
    code = melody.position_codes(step, meter)
    bar = melody.steps_per_bar(meter)
    assert divmod(code, melody.MAX_BAR_STEPS) == (melody.meter_id(meter), (step % bar) % melody.MAX_BAR_STEPS)
    assert melody.position_codes(step, meter, version=1) == step % 4


def test_lookback_sees_one_and_two_bars_back_from_the_predicted_step():
    h = np.arange(2, 40)  # distinct tokens
    back = melody.lookback_tokens(h, 8)
    assert back[6].tolist() == [HOLD, HOLD]  # predicting step 7: a bar back is step -1
    assert back[7].tolist() == [h[0], HOLD]  # predicting step 8: step 0 one bar back
    assert back[20].tolist() == [h[13], h[5]]


def test_the_batched_fork_steps_like_the_stepper_it_came_from():
    model = load_model(resolve_model_path("melody_dnn", None))
    assert model.info.representation_version == 2
    one = OnnxStepper(model, (6, 8))
    line = [on(62), HOLD, on(64), HOLD, on(66), OFF, on(67), HOLD, HOLD, on(69), HOLD, on(71)] * 3
    for step, tok in enumerate(line[:20]):
        one.feed(tok, step + 3)
    batch = one.fork(3)
    for k, tok in enumerate(line[20:], start=20):
        expect = one.feed(tok, k + 3)
        got = batch.feed(np.full(3, tok), k + 3)
        assert np.allclose(got, expect[None, :], atol=1e-4), k


class _Certain:
    """A fake predictor sure of the performer's next token (``script[fed count]``)."""

    def __init__(self, script):
        self.script, self.n = script, 0

    def reset(self):
        self.n = 0

    def feed(self, token, step):
        self.n += 1
        logits = np.full(melody.NUM_CLASSES, -30.0, np.float32)
        logits[self.script.get(self.n, HOLD)] = 30.0
        return logits


def test_anticipation_answers_the_note_the_performer_is_about_to_play():
    """With a predictor that knows the soprano's next note (E5 at step 4), the real duet model's bass for step 4 is
    consonant with E, whatever the soprano played before (G5)."""
    duet = load_model(resolve_model_path("duet_dnn", None))
    ant = Anticipation(DuetStepper(duet), _Certain({4: on(76)}), voice=0)
    ant.reset()
    prev = before = HOLD
    sop = [on(79), HOLD, HOLD, HOLD]
    for t in range(4):
        if t:
            ant.hear(sop[t - 1], before, t - 1)
        logits = ant.partner_logits(prev, t)
        tok = int(np.argmax(logits))
        before, prev = prev, tok
    ant.hear(sop[3], before, 3)
    logits = ant.partner_logits(prev, 4)
    tokens, weights = ant.candidates()
    assert tokens.tolist() == [on(76)] and weights.tolist() == [1.0]
    bass = [p for p in range(36, 64) if logits[on(p)] > logits.max() - 3.0]
    assert bass and all((76 - p) % 12 in (0, 3, 4, 7, 8, 9) for p in bass), bass


def test_a_peeked_state_is_the_state_a_feed_leaves():
    """``Anticipation.hear`` takes the peek's state for the performer's real token instead of feeding it again."""
    duet = load_model(resolve_model_path("duet_dnn", None))
    fed, peeked = DuetStepper(duet), DuetStepper(duet)
    for t, tok in enumerate([on(72), HOLD, on(74), HOLD]):
        fed.feed(tok, HOLD, 0, t)
        peeked.feed(tok, HOLD, 0, t)
    tokens = np.array([HOLD, on(76), on(71)])
    logits, states = peeked.peek_many(tokens, HOLD, 0, np.full(3, 4), with_states=True)
    expect = fed.feed(on(76), HOLD, 0, 4)
    peeked.set_state(states[:, 1:2])
    assert np.allclose(logits[1], expect, atol=1e-5)
    assert np.allclose(peeked.state, fed.state, atol=1e-5)
    assert np.allclose(peeked.feed(HOLD, HOLD, 0, 5), fed.feed(HOLD, HOLD, 0, 5), atol=1e-5)
