"""liveperf.models.phrase_models over the shipped ONNX files (no torch): shapes, seeds, masks, interpolation,
the critic's best-of, the duet stepper's state, and clear errors for the wrong file."""

from __future__ import annotations

import numpy as np
import pytest

from liveperf.music import melody, sampler, scales
from liveperf.models.onnx_model import ModelLoadError, load_model, shipped_models_dir
from liveperf.models.phrase_models import DuetStepper, GanModel, VaeModel, sample_phrases


@pytest.fixture(scope="module")
def vae():
    return VaeModel.load()


@pytest.fixture(scope="module")
def gan():
    return GanModel.load()


@pytest.fixture(scope="module")
def phrase():
    on, H, O = melody.on, melody.HOLD, melody.OFF
    bar = [on(67), H, H, H, on(69), H, on(71), H, on(72), H, H, H, on(71), H, O, H]
    return np.array(bar + bar[:8] + [on(67), H, H, H, H, H, O, H], dtype=np.int64)


def test_vae_shapes_and_reconstruction(vae, phrase):
    assert (vae.phrase_steps, vae.steps_per_beat) == (32, 4) and vae.latent_dim >= 16
    mu, logvar = vae.encode(np.stack([phrase, phrase]))
    assert mu.shape == logvar.shape == (2, vae.latent_dim) and mu.dtype == np.float32
    logits = vae.decode_logits(mu)
    assert logits.shape == (2, 32, melody.NUM_CLASSES) and np.isfinite(logits).all()
    greedy = vae.decode(mu, temperature=0.0)
    assert greedy.shape == (2, 32) and greedy.dtype == np.int64
    assert (greedy[0] == phrase).mean() >= 0.75  # a plain in-key phrase comes back (nearly) as it went in


def test_vae_decode_is_deterministic_with_a_seed(vae):
    z = np.random.default_rng(0).standard_normal((3, vae.latent_dim)).astype(np.float32)
    a = vae.decode(z, temperature=1.0, rng_state=sampler.new_rng_state(7))
    b = vae.decode(z, temperature=1.0, rng_state=sampler.new_rng_state(7))
    c = vae.decode(z, temperature=1.0, rng_state=sampler.new_rng_state(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="rng_state"):
        vae.decode(z, temperature=1.0)


def _assert_in_mask(tokens: np.ndarray, mask: np.ndarray) -> None:
    assert mask[tokens].all(), f"tokens outside the mask: {sorted(set(tokens[~mask[tokens]].tolist()))}"


def test_vae_decode_respects_key_and_range(vae):
    mask = scales.token_mask(scales.parse_key("D minor"), 62, 74)
    z = np.random.default_rng(1).standard_normal((8, vae.latent_dim)).astype(np.float32)
    tokens = vae.decode(z, allowed=mask, temperature=1.5, top_p=0.95, rng_state=sampler.new_rng_state(3))
    _assert_in_mask(tokens, mask)
    assert (tokens >= melody.PITCH_OFFSET).any()
    per_step = np.repeat(mask[None], 32, axis=0)
    per_step[16:, melody.PITCH_OFFSET:] = False  # second bar: no new notes
    tokens = vae.decode(z, allowed=per_step, temperature=1.0, rng_state=sampler.new_rng_state(3))
    assert (tokens[:, 16:] < melody.PITCH_OFFSET).all()


def test_vae_interpolation_endpoints_and_variation(vae, phrase):
    rng = np.random.default_rng(2)
    z1, z2 = rng.standard_normal((2, vae.latent_dim)).astype(np.float32)
    path = vae.interpolate(z1, z2, np.linspace(0.0, 1.0, 5))
    assert path.shape == (5, vae.latent_dim)
    ends = vae.decode(np.stack([z1, z2]), temperature=0.0)
    walk = vae.decode(path, temperature=0.0)
    assert np.array_equal(walk[0], ends[0]) and np.array_equal(walk[-1], ends[1])
    assert np.allclose(vae.interpolate(z1, z2, 0.5), (z1 + z2) / 2)
    same = vae.variation(phrase, 0.0, sampler.new_rng_state(1))
    assert np.array_equal(same[0], vae.decode(vae.encode(phrase)[0], temperature=0.0)[0])
    a = vae.variation(phrase, 0.8, sampler.new_rng_state(5))
    b = vae.variation(phrase, 0.8, sampler.new_rng_state(5))
    assert a.shape == (1, 32) and np.array_equal(a, b)


def test_decoded_phrases_are_canonical():
    logits = np.full((1, 4, melody.NUM_CLASSES), -10.0, np.float32)
    logits[0, :, melody.OFF] = 10.0  # OFF everywhere: all no-ops in silence
    logits[0, 2, melody.on(60)] = 20.0
    tokens = sample_phrases(logits, None, 0.0, 0, 1.0, sampler.new_rng_state(0))
    assert tokens[0].tolist() == [melody.HOLD, melody.HOLD, melody.on(60), melody.OFF]


def test_gan_sample_score_and_best_of(gan):
    assert (gan.phrase_steps, gan.steps_per_beat) == (32, 4)
    a = gan.sample(6, sampler.new_rng_state(11))
    b = gan.sample(6, sampler.new_rng_state(11))
    assert a.shape == (6, 32) and np.array_equal(a, b)
    assert len({row.tobytes() for row in a}) > 1
    scores = gan.score(a)
    assert scores.shape == (6,) and np.isfinite(scores).all()
    best, best_score = gan.best_of(6, sampler.new_rng_state(11))
    assert np.array_equal(best, a[int(np.argmax(scores))]) and best_score == pytest.approx(float(scores.max()))
    assert best_score >= scores.max() - 1e-6


def test_gan_sampling_respects_mask(gan):
    mask = scales.token_mask(scales.parse_key("G major"), 55, 79)
    tokens = gan.sample(10, sampler.new_rng_state(4), temperature=1.0, allowed=mask)
    _assert_in_mask(tokens, mask)
    greedy = gan.sample(10, sampler.new_rng_state(4), temperature=0.0, allowed=mask)
    _assert_in_mask(greedy, mask)


def test_duet_stepper_state_carries():
    duet = DuetStepper.load()
    assert duet.steps_per_beat == 4
    on, H = melody.on, melody.HOLD
    first = duet.feed(on(72), H, 0, 0)
    assert first.shape == (melody.NUM_CLASSES,) and first.dtype == np.float32
    second = duet.feed(H, int(np.argmax(first)), 0, 1)
    duet.reset()
    again = duet.feed(on(72), H, 0, 0)
    assert np.allclose(first, again)  # reset restores the start state
    fresh = duet.feed(H, int(np.argmax(first)), 0, 1)
    assert np.allclose(second, fresh)
    duet.reset()
    cold = duet.feed(H, int(np.argmax(first)), 0, 1)
    assert not np.allclose(second, cold)  # the state carried the first step
    # batched: one row per voice; the expected pitch of a new note orders bass < tenor < alto < soprano
    duet.reset(batch=3)
    logits = duet.feed([on(72)] * 3, [H] * 3, [0, 1, 2], 0)
    assert logits.shape == (3, melody.NUM_CLASSES) and duet.state.shape[1] == 3
    p = np.exp(logits[:, melody.PITCH_OFFSET:] - logits[:, melody.PITCH_OFFSET:].max(axis=1, keepdims=True))
    mean_pitch = (p * np.arange(melody.NUM_PITCHES)).sum(axis=1) / p.sum(axis=1)
    assert mean_pitch[0] < mean_pitch[1] < mean_pitch[2] < 72


def test_wrong_file_is_refused_with_its_name():
    enc = load_model(shipped_models_dir() / "melody_vae_encoder.onnx")
    with pytest.raises(ModelLoadError, match="melody_vae_encoder.onnx"):
        DuetStepper(enc)
    with pytest.raises(ModelLoadError, match="melody_vae_encoder.onnx"):
        GanModel(enc, enc)


def test_vae_decode_latency_is_small(vae):
    """Decode + sampling of one 2-bar phrase, batch 1: a loose bound here (the measured p99 is in the results)."""
    import time

    z = np.zeros((1, vae.latent_dim), np.float32)
    state = sampler.new_rng_state(0)
    vae.decode(z, temperature=1.0, rng_state=state)
    times = []
    for _ in range(50):
        t0 = time.perf_counter_ns()
        vae.decode(z, temperature=1.0, top_p=0.9, rng_state=state)
        times.append(time.perf_counter_ns() - t0)
    assert np.median(times) < 5_000_000
