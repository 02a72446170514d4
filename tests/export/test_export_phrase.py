"""export/ for the VAE, GAN and duet models: ONNX parity with torch for every exported graph (fresh tiny models,
the real export functions), the shipped files' contracts, the phrase windows and statistics. Fast: nothing is
trained, no corpus is parsed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from export import duet_model, gan_model, phrase_data, vae_model  # noqa: E402
from export.train_duet import consonance, make_batch  # noqa: E402
from liveperf.music import melody  # noqa: E402
from liveperf.models.metadata import parse_metadata  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "liveperf" / "data" / "models"
ATOL = 1e-4


def _session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 3])
def test_vae_encoder_and_decoder_match_torch(tmp_path, batch):
    torch.manual_seed(0)
    vae = vae_model.PhraseVAE(latent=8, embed=8, enc_hidden=16, dec_width=8, dec_hidden=16, dec_conv=16).eval()
    enc = _session(vae_model.export_encoder(vae.encoder, tmp_path / "e.onnx"))
    dec = _session(vae_model.export_decoder(vae.decoder, tmp_path / "d.onnx"))
    phrases = np.random.default_rng(1).integers(0, melody.NUM_CLASSES, (batch, 32))
    mu, logvar = enc.run(["mu", "logvar"], {"phrase": phrases})
    z = np.random.default_rng(2).standard_normal((batch, 8)).astype(np.float32)
    logits, = dec.run(["logits"], {"z": z})
    with torch.no_grad():
        tmu, tlv = vae.encoder(torch.from_numpy(phrases))
        tlogits = vae.decoder(torch.from_numpy(z))
    assert mu.shape == logvar.shape == (batch, 8) and logits.shape == (batch, 32, melody.NUM_CLASSES)
    assert np.abs(mu - tmu.numpy()).max() < ATOL and np.abs(logvar - tlv.numpy()).max() < ATOL
    assert np.abs(logits - tlogits.numpy()).max() < ATOL


def test_gan_phrase_features_equal_phrase_stats_on_one_hot_phrases():
    """The GAN's differentiable statistics-matching features are exact for hard phrases."""
    rng = np.random.default_rng(3)
    pitches = melody.PITCH_OFFSET + 60 + rng.integers(-9, 10, (40, 32))
    tokens = np.where(rng.random((40, 32)) < 0.5, melody.HOLD, pitches)
    tokens[:, 5] = melody.OFF
    tokens[0] = melody.HOLD  # a silent phrase: counts for neither rate
    phrases = np.stack([melody.canonical(p) for p in tokens])
    stats = phrase_data.phrase_stats(phrases)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(phrases), melody.NUM_CLASSES).float()
    feats = gan_model.phrase_features(onehot)
    assert stats["leap_rate"] > 0.1
    assert abs(float(feats["leap_rate"]) - stats["leap_rate"]) < 1e-4
    assert abs(float(feats["repeat_rate"]) - stats["repeated_note_rate"]) < 1e-4
    assert abs(float(feats["onset_rate"]) * 32 - stats["onsets_per_phrase"]) < 1e-4
    assert abs(float(feats["in_scale_rate"]) - stats["in_scale_rate"]) < 1e-4


@pytest.mark.parametrize("batch", [1, 3])
def test_gan_generator_and_critic_match_torch(tmp_path, batch):
    torch.manual_seed(0)
    gen = gan_model.PhraseGenerator(latent=8, width=8, hidden=16, conv=16).eval()
    critic = gan_model.PhraseCritic(features=8, hidden=16).eval()
    g = _session(gan_model.export_generator(gen, tmp_path / "g.onnx"))
    c = _session(gan_model.export_critic(critic, tmp_path / "c.onnx"))
    z = np.random.default_rng(2).standard_normal((batch, 8)).astype(np.float32)
    logits, = g.run(["logits"], {"z": z})
    onehot = np.eye(melody.NUM_CLASSES, dtype=np.float32)[logits.argmax(-1)]
    score, = c.run(["score"], {"phrase_onehot": onehot})
    with torch.no_grad():
        tlogits = gen(torch.from_numpy(z))
        tscore = critic(torch.from_numpy(onehot))
    assert logits.shape == (batch, 32, melody.NUM_CLASSES) and score.shape == (batch,)
    assert np.abs(logits - tlogits.numpy()).max() < ATOL and np.abs(score - tscore.numpy()).max() < ATOL


@pytest.mark.parametrize("batch", [1, 3])
def test_duet_step_matches_torch_sequence_over_40_steps(tmp_path, batch):
    torch.manual_seed(0)
    model = duet_model.DuetGRU(embed=8, hidden=16, layers=2).eval()
    sess = _session(duet_model.export_onnx(model, tmp_path / "duet.onnx"))
    rng = np.random.default_rng(3)
    perf = rng.integers(0, melody.NUM_CLASSES, (batch, 40))
    prev = rng.integers(0, melody.NUM_CLASSES, (batch, 40))
    voice = np.repeat(rng.integers(0, 3, (batch, 1)), 40, axis=1)
    pos = np.broadcast_to(np.arange(40) % 4, (batch, 40)).copy()
    with torch.no_grad():
        seq_logits, seq_state = model(*(torch.from_numpy(a) for a in (perf, prev, voice, pos)))
    state = np.zeros((2, batch, 16), np.float32)
    for t in range(40):
        logits, state = sess.run(None, {"performer_token": perf[:, t], "partner_prev": prev[:, t],
                                        "voice": voice[:, t], "pos": pos[:, t], "state": state})
        assert np.abs(logits - seq_logits[:, t].numpy()).max() < ATOL
    assert np.abs(state - seq_state.numpy()).max() < ATOL


SHIPPED = {
    "melody_vae_encoder": ("vae_encoder", {"phrase": ("int64", (2, 32))}),
    "melody_vae_decoder": ("vae_decoder", {"z": ("float32", None)}),
    "melody_gan_generator": ("gan_generator", {"z": ("float32", None)}),
    "melody_gan_critic": ("gan_critic", {"phrase_onehot": ("float32", (2, 32, melody.NUM_CLASSES))}),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_phrase_model_contract(name):
    path = MODELS / f"{name}.onnx"
    assert path.exists(), f"{path} missing: run python -m export.train_vae / train_gan"
    assert path.stat().st_size < 6_000_000
    sess = _session(path)
    info = parse_metadata(sess.get_modelmeta().custom_metadata_map, str(path))
    family, inputs = SHIPPED[name]
    assert (info.name, info.family, info.steps_per_beat) == (name, family, 4)
    assert info.training["phrase_steps"] == 32 and info.training["latent_dim"] >= 16
    assert info.split["method"].startswith("by tune") and not info.training["time_capped"]
    feeds = {}
    for arg in sess.get_inputs():
        dtype, shape = inputs[arg.name]
        shape = shape or (2, info.training["latent_dim"])
        feeds[arg.name] = (np.zeros(shape, np.int64) if dtype == "int64"
                           else np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    for out in sess.run(None, feeds):
        assert out.shape[0] == 2 and out.dtype == np.float32 and np.isfinite(out).all()


def test_shipped_duet_contract():
    path = MODELS / "duet_dnn.onnx"
    assert path.exists(), f"{path} missing: run python -m export.train_duet"
    assert path.stat().st_size < 6_000_000
    sess = _session(path)
    info = parse_metadata(sess.get_modelmeta().custom_metadata_map, str(path))
    assert (info.name, info.family, info.steps_per_beat) == ("duet_dnn", "duet_step", 4)
    assert list(info.inputs) == duet_model.INPUT_NAMES and list(info.outputs) == duet_model.OUTPUT_NAMES
    test = info.metrics["test"]
    assert {"duet_dnn", "bigram_addk", "kneser_ney"} <= set(test)
    assert all(test["duet_dnn"]["nll"] < m["nll"] for k, m in test.items() if k != "duet_dnn")
    layers, hidden = info.state_shape
    state = np.zeros((layers, 2, hidden), np.float32)
    for t in range(8):
        feeds = {"performer_token": np.array([melody.on(72), melody.HOLD]), "partner_prev": np.zeros(2, np.int64),
                 "voice": np.array([0, 2]), "pos": np.full(2, t % 4), "state": state}
        logits, state = sess.run(None, feeds)
        assert logits.shape == (2, melody.NUM_CLASSES) and np.isfinite(logits).all()


def test_window_cut_restrikes_a_sounding_note_and_skips_silence():
    H, O, on = melody.HOLD, melody.OFF, melody.on
    tune = np.array([on(60), H, H, H, H, H, O, H] + [H] * 56 + [on(62)] + [H] * 31, dtype=np.int64)
    snd = phrase_data.sounding_pitch(tune)
    assert snd[:6].tolist() == [60] * 6 and snd[6] == -1
    w = phrase_data.cut(tune, snd, 4)
    assert w[:4].tolist() == [on(60), H, O, H] and len(w) == 32
    windows = phrase_data.eval_windows([tune])  # starts 0, 32 (all silent: skipped), 64
    assert len(windows) == 2 and windows[0][0] == on(60) and windows[1][0] == on(62)
    sampler = phrase_data.WindowSampler([tune])
    rng = np.random.default_rng(0)
    batch = sampler.batch(sampler.epoch(rng), rng)
    assert batch.shape[1] == 32 and all((row >= melody.PITCH_OFFSET).any() for row in batch)


def test_phrase_stats_on_known_phrases():
    on, H = melody.on, melody.HOLD
    c_major = np.array([[on(60), H, on(62), H, on(64), H, on(64), H] * 4])
    stats = phrase_data.phrase_stats(np.repeat(c_major, 2, axis=0), reference_degree_hist=np.ones(12))
    assert stats["in_scale_rate"] == 1.0 and stats["pitch_range"] == 4.0 and stats["distinct_rate"] == 0.5
    assert stats["empty_step_rate"] == 0.0 and 0 < stats["js_degree_hist"] <= 1
    assert stats["repeated_note_rate"] == pytest.approx(4 / 15)


def test_duet_batches_and_consonance():
    on, H = melody.on, melody.HOLD
    sop = np.array([on(72), H, H, H, on(74), H, H, H])
    bass = np.array([on(48), H, H, H, on(55), H, H, H])  # 72-48: two octaves; 74-55 = 19 -> 7 (P5)
    assert consonance(sop, bass) == (2, 2)
    codes = np.asarray(melody.position_codes(np.arange(8), (4, 4)))
    perf, prev, voice, pos, tgt, mask = make_batch([(sop, bass, 0, codes), (sop[:4], bass[:4], 2, codes[:4])], lag=0)
    assert perf[0].tolist() == sop.tolist() and pos[0].tolist() == codes.tolist()
    assert prev[0, 1:].tolist() == bass[:-1].tolist() and prev[0, 0] == melody.HOLD
    assert mask[0].tolist() == [False] + [True] * 7 and mask[1].tolist() == [False, True, True, True] + [False] * 4
    assert voice[1].tolist() == [2] * 8
    late, *_ = make_batch([(sop, bass, 0, codes)], lag=1)  # the causal duet hears the soprano a step late
    assert late[0].tolist() == [melody.HOLD] + sop[:-1].tolist()
