"""The fused duet graph (``export/fuse_duet.py``, ``liveperf.models.fused_duet``) computes what the two source models
compute, is used only for the pair it was built from, and the anticipating duet plays the same through it."""

import numpy as np
import pytest

from liveperf.music import melody
from liveperf.models.fused_duet import FusedDuetStep, find_fused
from liveperf.models.onnx_model import load_model, shipped_models_dir
from liveperf.models.phrase_models import DuetStepper
from liveperf.models.step_model import OnnxStepper, StepError
from liveperf.modes.anticipation import STILL, Anticipation

MODELS = shipped_models_dir()
METER = (6, 8)  # not 4/4: the position tables must follow the meter


@pytest.fixture(scope="module")
def loaded():
    return {name: load_model(MODELS / f"{name}.onnx") for name in
            ("duet_dnn", "soprano_dnn", "melody_dnn", "duet_anticipation")}


def log_softmax(x):
    x = x.astype(np.float64) - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def random_line(rng, n):
    """Tokens as a performer plays them: mostly HOLD, some notes, a few rests."""
    kinds = rng.choice(3, size=n, p=[0.6, 0.35, 0.05])
    return [melody.HOLD if k == 0 else melody.on(int(rng.integers(55, 80))) if k == 1 else melody.OFF for k in kinds]


def test_one_call_computes_what_the_two_models_compute(loaded):
    fused = FusedDuetStep(loaded["duet_anticipation"])
    predictor = OnnxStepper(loaded["soprano_dnn"], METER)
    twin = OnnxStepper(loaded["soprano_dnn"], METER)  # stages the fused step's inputs
    duet = DuetStepper(loaded["duet_dnn"], meter=METER)
    rng = np.random.default_rng(7)
    line = random_line(rng, 120)
    partner = [melody.HOLD] + [int(t) for t in rng.integers(0, 130, size=120)]
    worst = 0.0
    for step, token in enumerate(line):
        pos, back, _ = twin.stage(token, step)
        twin.commit()
        rows, tokens, pred_logp = fused.step(token, pos, back, partner[step], 1, duet.position(step),
                                             partner[step + 1], duet.position(step + 1))
        want_pred = log_softmax(predictor.feed(token, step))
        duet.feed(token, partner[step], 1, step)
        order = np.argsort(-want_pred, kind="stable")[:fused.candidates]
        assert tokens.tolist() == order.tolist() + [melody.HOLD]
        want_rows = log_softmax(duet.peek_many(tokens, partner[step + 1], 1, np.full(len(tokens), step + 1)))
        worst = max(worst, np.abs(rows - want_rows).max(), np.abs(pred_logp - want_pred).max(),
                    np.abs(fused.duet_state - duet.state[0]).max())
    assert worst < 1e-4


def test_a_failed_call_keeps_the_states(loaded):
    fused = FusedDuetStep(loaded["duet_anticipation"])
    fused.step(melody.on(60), 0, (0, 0), melody.HOLD, 0, 0, melody.HOLD, 1)
    before = fused.duet_state.copy()
    with pytest.raises(StepError):
        fused.step(10_000, 1, (0, 0), melody.HOLD, 0, 1, melody.HOLD, 2)  # no such token: the gather fails
    assert np.array_equal(fused.duet_state, before)


def test_used_only_for_the_pair_it_was_built_from(loaded):
    assert find_fused(loaded["duet_dnn"], loaded["soprano_dnn"]) is not None
    assert find_fused(loaded["duet_dnn"], loaded["melody_dnn"]) is None  # another predictor: the two-model path


def test_the_shipped_file_is_what_the_command_builds_from_the_shipped_pair(tmp_path):
    pytest.importorskip("onnx")
    from export.fuse_duet import main

    out = tmp_path / "duet_anticipation.onnx"
    assert main(["--out", str(out)]) == 0
    assert out.read_bytes() == (MODELS / "duet_anticipation.onnx").read_bytes()


def anticipations(loaded):
    def make(fused):
        return Anticipation(DuetStepper(loaded["duet_dnn"], meter=METER), OnnxStepper(loaded["soprano_dnn"], METER),
                            0, FusedDuetStep(loaded["duet_anticipation"]) if fused else None)
    return make(True), make(False)


def test_the_duet_hears_the_same_through_the_fused_graph(loaded):
    """Both paths, fed one line: the same candidates, strike probabilities and partner log-probabilities, for the
    likely tokens, for "no new note" and for a note the performer really played (peeked off the table too)."""
    fused, pair = anticipations(loaded)
    rng = np.random.default_rng(3)
    line = random_line(rng, 80)
    partner_prev, partner_before = melody.HOLD, melody.HOLD
    for step, token in enumerate(line):
        if step:
            for a in (fused, pair):
                a.hear(line[step - 1], partner_before, step - 1, partner_prev)
        np.testing.assert_array_equal(fused.candidates()[0], pair.candidates()[0])
        assert fused.strike_probability() == pytest.approx(pair.strike_probability(), abs=1e-5)
        sounding = melody.pitch_of(partner_prev) if melody.is_on(partner_prev) else None
        for given in (None, STILL, melody.on(int(rng.integers(40, 90)))):
            got, want = (a.partner_logits(partner_prev, step, sounding, given) for a in (fused, pair))
            np.testing.assert_allclose(got, want, atol=2e-4)
        partner_before, partner_prev = partner_prev, int(np.argmax(want))
    assert fused.state_fed == len(line) - 1 and pair.state_reused + pair.state_fed == len(line) - 1
