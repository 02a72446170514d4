"""export/ for the DNN melody model: ONNX parity with torch, the shipped file's contract, tokenising a real tune,
n-gram distributions, the by-tune split. Fast: no corpus is parsed whole, nothing is trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from export import melody_data, ngram  # noqa: E402
from export.melody_model import INPUT_NAMES, OUTPUT_NAMES, MelodyGRU, MelodyStep, export_onnx  # noqa: E402
from liveperf.music import melody  # noqa: E402
from liveperf.models.metadata import parse_metadata  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[2] / "liveperf" / "data" / "models" / "melody_dnn.onnx"


def _session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run_both(model: MelodyGRU, sess, tokens: np.ndarray):
    """Step torch and ORT side by side over ``tokens`` [B, T]; return the largest logit and state differences."""
    step = MelodyStep(model).eval()
    batch, steps = tokens.shape
    state_ort = np.zeros((model.layers, batch, model.hidden), np.float32)
    state_pt = torch.zeros(model.layers, batch, model.hidden)
    worst_logits = worst_state = 0.0
    back = np.stack([melody.lookback_tokens(row, 16) for row in tokens.astype(np.int64)])  # [B, T, 2]
    for t in range(steps):
        tok = tokens[:, t].astype(np.int64)
        pos = np.full(batch, melody.position_codes(t, (6, 8) if t > 32 else (4, 4)), dtype=np.int64)
        lb = np.ascontiguousarray(back[:, t])
        logits_ort, state_ort = sess.run(OUTPUT_NAMES, {"token": tok, "pos": pos, "lookback": lb, "state": state_ort})
        with torch.no_grad():
            logits_pt, state_pt = step(torch.from_numpy(tok), torch.from_numpy(pos), torch.from_numpy(lb), state_pt)
        worst_logits = max(worst_logits, float(np.abs(logits_ort - logits_pt.numpy()).max()))
        worst_state = max(worst_state, float(np.abs(state_ort - state_pt.numpy()).max()))
    return worst_logits, worst_state


@pytest.mark.parametrize("batch", [1, 3])
def test_exported_step_matches_torch_over_64_steps(tmp_path, batch):
    torch.manual_seed(1)
    model = MelodyGRU(embed=24, hidden=48, layers=2).eval()
    path = export_onnx(model, tmp_path / "m.onnx", {"liveperf.test": "1"})
    sess = _session(path)
    assert [i.name for i in sess.get_inputs()] == INPUT_NAMES
    assert [o.name for o in sess.get_outputs()] == OUTPUT_NAMES
    tokens = np.random.default_rng(0).integers(0, melody.NUM_CLASSES, size=(batch, 64))
    worst_logits, worst_state = _run_both(model, sess, tokens)
    assert worst_logits < 1e-4 and worst_state < 1e-4


def test_step_model_equals_sequence_model():
    torch.manual_seed(2)
    model = MelodyGRU(embed=16, hidden=32, layers=2).eval()
    tokens = torch.randint(0, melody.NUM_CLASSES, (2, 20))
    pos = torch.from_numpy(np.asarray(melody.position_codes(np.arange(20), (3, 4)))).expand(2, 20)
    back = torch.from_numpy(np.stack([melody.lookback_tokens(r, 12) for r in tokens.numpy()]))
    with torch.no_grad():
        seq_logits, seq_state = model(tokens, pos, back)
        state = model.zero_state(2)
        step = MelodyStep(model)
        for t in range(20):
            logits, state = step(tokens[:, t], pos[:, t], back[:, t], state)
            assert torch.allclose(logits, seq_logits[:, t], atol=1e-5)
    assert torch.allclose(state, seq_state, atol=1e-5)


@pytest.mark.parametrize("name", ["melody_dnn", "soprano_dnn"])
def test_shipped_model_contract(name):
    path = SHIPPED.with_name(f"{name}.onnx")
    assert path.exists(), f"{path} missing: run python -m export.train_melody (--corpus chorales for soprano_dnn)"
    assert path.stat().st_size < 8_000_000
    sess = _session(path)
    info = parse_metadata(sess.get_modelmeta().custom_metadata_map, str(path))
    assert (info.name, info.family, info.steps_per_beat) == (name, "dnn_step", 4)
    assert list(info.inputs) == INPUT_NAMES and list(info.outputs) == OUTPUT_NAMES
    layers, hidden = info.state_shape
    assert info.split["method"].startswith("by content") and info.representation_version == 2
    test_metrics = info.metrics["test"]
    assert {name, "bigram_addk", "kneser_ney"} <= set(test_metrics)
    assert all(test_metrics[name]["nll"] < m["nll"] for k, m in test_metrics.items() if k != name)
    assert not info.training["time_capped"]
    batch = 2
    state = np.zeros((layers, batch, hidden), np.float32)
    tok = np.array([melody.on(67), melody.HOLD], dtype=np.int64)
    for t in range(16):
        feeds = {"token": tok, "pos": np.full(batch, melody.position_codes(t, (4, 4)), np.int64),
                 "lookback": np.zeros((batch, 2), np.int64), "state": state}
        logits, state = sess.run(None, feeds)
        assert logits.shape == (batch, melody.NUM_CLASSES) and logits.dtype == np.float32
        assert state.shape == (layers, batch, hidden)
        assert np.isfinite(logits).all() and np.isfinite(state).all()
        tok = logits.argmax(axis=1).astype(np.int64)


def _ryans_tune(name: str):
    music21 = pytest.importorskip("music21")
    from export import corpus

    paths = [p for p in music21.corpus.getComposer("ryansMammoth") if Path(str(p)).name == name]
    assert paths, f"{name} not in music21's ryansMammoth corpus"
    corpus._disable_beaming()
    score = music21.converter.parse(str(paths[0]), forceSource=True, storePickle=False)
    return corpus.tokenise_score(score)


def test_tokenise_reel_with_pickup_and_triplet():
    # X:7 PADDY MILES' FRICASSEE, M:C| L:1/8 K:G: "gf|:eA ((3AAA) edBc|..." -- a one-beat pickup (no lead-in),
    # the eighth-note triplet A A A over steps 8..11 lands on steps 8, 9 (9.33) and 11 (10.67).
    tokens, counts = _ryans_tune("PaddyMilesFricasseeReel.abc")
    H, on = melody.HOLD, melody.on
    expected = [on(79), H, on(78), H, on(76), H, on(69), H, on(69), on(69), H, on(69),
                on(76), H, on(74), H, on(71), H, on(72), H]
    assert tokens[:20].tolist() == expected
    assert counts["off_grid"] > 0 and counts["grace"] == 0


def test_tokenise_jig_pickup_is_aligned_to_the_beat():
    # TWO-PENNY POSTMAN'S JIG, M:9/8 L:1/8 K:A: "d|:c2A AcA ecA|" -- an eighth-note pickup, so two silent steps
    # come first and the first full bar starts at step 4 (step % 4 == 0).
    tokens, counts = _ryans_tune("TwoPennyPostmansJig.abc")
    H, on = melody.HOLD, melody.on
    expected = [H, H, on(74), H, on(73), H, H, H, on(69), H, on(69), H, on(73), H, on(69), H]
    assert tokens[:16].tolist() == expected
    assert counts["off_grid"] == 0


@pytest.fixture(scope="module")
def toy_seqs():
    rng = np.random.default_rng(3)
    seqs = []
    for _ in range(30):
        n = int(rng.integers(10, 60))
        seq = np.where(rng.random(n) < 0.5, melody.HOLD, melody.on(60) + rng.integers(-5, 8, n))
        seq[rng.random(n) < 0.05] = melody.OFF
        seqs.append(melody.canonical(seq))
    return seqs


def test_kneser_ney_distributions_sum_to_one(toy_seqs):
    kn = ngram.KneserNey(5).fit(ngram.transpositions(toy_seqs[:20], shifts=(-1, 0, 2)))
    B = ngram.BOS
    contexts = np.array([[B, B, B, B], [B, B, B, melody.on(60)], [melody.on(60), 0, melody.on(62), 0],
                         [melody.on(127), 1, 1, 0], [0, 0, 0, 0]])
    for order in (1, 2, 3, 5):
        dist = kn.dist(contexts, order)
        assert np.allclose(dist.sum(axis=1), 1.0, atol=1e-9) and (dist > 0).all()
        words = np.arange(melody.NUM_CLASSES)
        for row, ctx in enumerate(contexts):
            p = kn.prob(np.repeat(ctx[None], words.size, axis=0), words, order)
            assert np.allclose(p, dist[row])
    chunks = list(kn.distributions(toy_seqs[20:], chunk=50))
    assert sum(t.size for _, t in chunks) == sum(len(s) - 1 for s in toy_seqs[20:])
    assert np.isfinite(kn.target_nll(toy_seqs[20:]))


def test_add_k_bigram_rows_sum_to_one(toy_seqs):
    bigram = ngram.AddKBigram(0.1).fit(toy_seqs)
    table = bigram.table()
    assert table.shape == (ngram.BASE, melody.NUM_CLASSES)
    assert np.allclose(table.sum(axis=1), 1.0) and (table > 0).all()
    metrics = ngram.metrics_from_distributions([bigram.distributions(toy_seqs)])
    assert metrics["steps"] == sum(len(s) - 1 for s in toy_seqs)
    assert 0 < metrics["acc"] <= 1 and np.isclose(metrics["nll"], bigram.target_nll(toy_seqs))


def test_split_is_by_tune_and_seeded():
    a, b = melody_data.split_by_tune(1000, seed=7), melody_data.split_by_tune(1000, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(1000))
    assert (len(a["train"]), len(a["valid"]), len(a["test"])) == (900, 50, 50)


def test_training_chunks_cover_every_target_once():
    lengths = np.array([2, 5, 300, 700])
    chunks = melody_data.make_chunks(lengths, 128, np.random.default_rng(0))
    covered = {}
    for tune, start, end in chunks:
        assert 0 < end - start <= 128
        for t in range(start + 1, end + 1):
            covered[(tune, t)] = covered.get((tune, t), 0) + 1
    assert covered == {(tune, t): 1 for tune, n in enumerate(lengths) for t in range(1, n)}
