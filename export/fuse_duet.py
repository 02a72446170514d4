"""Fuse the duet's two step models into one graph: the whole per-step model work of the anticipating duet in one
onnxruntime call (``liveperf.models.fused_duet`` runs it).

```
python -m export.fuse_duet                      # shipped duet_dnn + soprano_dnn -> liveperf/data/models/duet_anticipation.onnx
python -m export.fuse_duet --duet D.onnx --predictor P.onnx --out F.onnx
```

Why: a duet step was 2 to 3 onnxruntime calls (the predictor's step, the duet model's step on the performer's real
token when the last peek did not hold it, a batched peek of 7 rows) plus ~160 µs of numpy glue: p99 570-690 µs in
``liveperf check``, against a 250 µs goal. Timed per graph on the dev box, most of a call is neither the GRU's
arithmetic nor the call itself (an empty graph: 6 µs) but the ~36 small nodes the exporter writes around it
(position decoding, embedding gathers and sums) and the batched GRU op, which multiplies the *same* hidden state by
the recurrent weights once per row.

What the fused graph computes is exactly what the two models compute (no retraining; ``tests/models/test_fused_duet.py``
checks the outputs against the source models): for the performer's token at step t - 1 (``performer``) and the
partner's tokens at t - 2 and t - 1,
1. the predictor's step on ``performer`` -> its log-probabilities for the performer's token at t (``pred_logp``),
   and its top ``CANDIDATES`` tokens (``cand``, ONNX TopK: ties to the lower token, as a stable argsort);
2. the duet model's step on (``performer``, ``partner_before``) at t - 1 -> its state ``duet_state_out``;
3. from that state, the duet model's answer at t to each candidate and to ``HOLD`` (``rows``, [K + 1, 130],
   log-softmax): the batched peek.
Rewritten, not changed: every embedding is folded through the GRU's input weights into a table of input gates
(gather and add; the position subgraph becomes one table over every position code, computed by running the source
graph), and the GRU cell is written out (linear_before_reset, gates z, r, h), so that the recurrent product of the
peek is one [1, H] x [H, 3H] product shared by every row. Sums come in a different order: outputs agree with the
source models to ~1e-5.

The file carries the metadata of a ``duet_anticipation`` model and ``liveperf.fused_from``: the SHA-256 of the two
source files. The runtime uses it only for exactly that pair (a setlist that names another duet model or predictor
gets the two-model path). Needs ``onnx`` (the ``export`` extra), not torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from liveperf.music import melody
from liveperf.models.metadata import build_metadata, parse_metadata
from liveperf.models.onnx_model import shipped_models_dir

CANDIDATES = 6  # the predictor's likeliest performer tokens peeked per step (Anticipation.MAX_CANDIDATES)
OPSET = 17
INPUTS = ["pred_rows", "duet_rows", "peek_rows", "pred_state", "duet_state", "duet_gates"]
OUTPUTS = ["rows", "cand", "pred_logp", "pred_state_out", "duet_state_out", "duet_gates_out"]

# The embedding tables of each source family and the input (and column) that indexes them; the rest of the GRU's
# input depends on ``pos`` alone and becomes one table (``_pos_table``).
PREDICTOR_TABLES = {"model.token_emb.weight": ("token", None), "model.back1_emb.weight": ("lookback", 0),
                    "model.back2_emb.weight": ("lookback", 1)}
DUET_TABLES = {"model.performer_emb.weight": ("performer_token", None),
               "model.partner_emb.weight": ("partner_prev", None), "model.voice_emb.weight": ("voice", None)}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class StepParts:
    """A one-layer GRU step model taken apart: input-gate tables per input, the position table, R, biases, head."""

    def __init__(self, path: Path, tables: dict[str, tuple[str, int | None]]):
        self.path = Path(path)
        self.model = onnx.load(str(path))
        self.info = parse_metadata({p.key: p.value for p in self.model.metadata_props}, str(path))
        inits = {i.name: numpy_helper.to_array(i) for i in self.model.graph.initializer}
        grus = [n for n in self.model.graph.node if n.op_type == "GRU"]
        if len(grus) != 1 or self.info.state_shape[0] != 1:
            raise ValueError(f"{path}: fusing needs one single-layer GRU (found {len(grus)} GRU nodes, "
                             f"state_shape {self.info.state_shape})")
        gru = grus[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in gru.attribute}
        if attrs.get("linear_before_reset") != 1 or attrs.get("direction", b"forward") != b"forward":
            raise ValueError(f"{path}: GRU must be forward with linear_before_reset=1 (as torch exports it)")
        self.hidden = int(attrs["hidden_size"])
        w = inits[gru.input[1]][0].astype(np.float64)  # [3H, E], gates z, r, h
        b = inits[gru.input[3]][0].astype(np.float64)  # [6H]: Wb then Rb
        self.r_t = inits[gru.input[2]][0].T.astype(np.float32).copy()  # [H, 3H]
        self.r_b = b[3 * self.hidden:].astype(np.float32)
        heads = [n for n in self.model.graph.node if n.op_type == "MatMul"]
        self.head_w = inits[heads[-1].input[1]].astype(np.float32)  # [H, 130]
        self.head_b = inits["model.head.bias"].astype(np.float32)
        self.tables = {name: (inits[name].astype(np.float64) @ w.T).astype(np.float32) for name in tables}
        self.indexed_by = tables
        pos = self._pos_embedding(gru.input[0], tables, inits)
        self.pos_table = (pos @ w.T + b[:3 * self.hidden]).astype(np.float32)

    def _pos_embedding(self, x_name: str, tables: dict, inits: dict) -> np.ndarray:
        """The position part of the GRU's input for every position code: the source graph run with every other
        input at index 0, minus those inputs' rows 0."""
        n = melody.NUM_METER_IDS * melody.MAX_BAR_STEPS if self.info.representation_version >= 2 else \
            self.info.steps_per_beat
        m = onnx.load(str(self.path))
        m.graph.output.append(helper.make_tensor_value_info(x_name, TensorProto.FLOAT, None))
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {}
        for i in sess.get_inputs():
            if i.name == "pos":
                feeds[i.name] = np.arange(n, dtype=np.int64)
            elif i.name == "state":
                feeds[i.name] = np.zeros((1, n, self.hidden), np.float32)
            elif i.name == "lookback":
                feeds[i.name] = np.zeros((n, 2), np.int64)
            else:
                feeds[i.name] = np.zeros(n, np.int64)
        x = sess.run([x_name], feeds)[0].reshape(n, -1).astype(np.float64)  # the GRU's X: [1, n, E]
        return x - sum(inits[name][0].astype(np.float64) for name in tables)


class GraphBuilder:
    def __init__(self):
        self.nodes, self.inits, self._n, self._names = [], [], 0, set()

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer; a name already given is the same tensor (the duet's tables serve its step and peek)."""
        if name not in self._names:
            self._names.add(name)
            self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, name: str | None = None, **attrs) -> list[str]:
        self._n += 1
        outs = [name] if name is not None else [f"t{self._n}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs

    def one(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        return self.op(op_type, inputs, 1, name, **attrs)[0]

    def add_all(self, terms: list[str]) -> str:
        acc = terms[0]
        for t in terms[1:]:
            acc = self.one("Add", [acc, t])
        return acc

    def cell(self, prefix: str, gi: str, h: str, h_gates: str, hidden: int, name: str | None = None) -> str:
        """h' of a GRU cell (linear_before_reset) from input gates ``gi`` [B, 3H], the state ``h`` [1 or B, H] and
        its recurrent gates ``h_gates`` [1 or B, 3H] (broadcast over B)."""
        split = self.const(f"{prefix}_split", np.array([hidden] * 3, np.int64))
        iz, ir, inn = self.op("Split", [gi, split], 3, axis=-1)
        hz, hr, hn = self.op("Split", [h_gates, split], 3, axis=-1)
        z = self.one("Sigmoid", [self.one("Add", [iz, hz])])
        r = self.one("Sigmoid", [self.one("Add", [ir, hr])])
        n = self.one("Tanh", [self.one("Add", [inn, self.one("Mul", [r, hn])])])
        return self.one("Add", [n, self.one("Mul", [z, self.one("Sub", [h, n])])], name=name)


def _stacked(parts: StepParts, order: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """One table of input gates: the embedding tables in ``order``, then the position table; and where each starts
    (the runtime adds these offsets to its indices: ``liveperf.fused_tables``)."""
    blocks, offsets, at = [], {}, 0
    for name in order:
        table = parts.tables[name] if name != "pos" else parts.pos_table
        offsets[name] = at
        blocks.append(table)
        at += len(table)
    return np.concatenate(blocks).astype(np.float32), offsets


def fuse(duet_path: Path, predictor_path: Path, out_path: Path) -> Path:
    d = StepParts(duet_path, DUET_TABLES)
    p = StepParts(predictor_path, PREDICTOR_TABLES)
    if d.info.family != "duet_step" or d.info.performer_lag_steps != 0:
        raise ValueError(f"{duet_path}: a same-step duet model (performer_lag_steps 0) is what anticipation fuses")
    if p.info.family != "dnn_step" or p.info.representation_version < 2:
        raise ValueError(f"{predictor_path}: the predictor must be a v2 dnn_step model")
    p_table, p_at = _stacked(p, ["model.token_emb.weight", "model.back1_emb.weight", "model.back2_emb.weight", "pos"])
    d_table, d_at = _stacked(d, ["model.performer_emb.weight", "model.partner_emb.weight", "model.voice_emb.weight",
                                 "pos"])
    g = GraphBuilder()
    ax0 = g.const("ax0", np.array([0], np.int64))
    p_table, d_table = g.const("p_table", p_table), g.const("d_table", d_table)

    def gate_sum(table: str, rows: str) -> str:  # the input gates [1, 3H]: the sum of the indexed rows
        return g.one("ReduceSum", [g.one("Gather", [table, rows]), ax0], keepdims=1)

    # 1. The predictor hears the performer's token at t - 1 (pred_rows: token, lookback 1 and 2, position).
    hp2 = g.cell("p", gate_sum(p_table, "pred_rows"), "pred_state",
                 g.one("Gemm", ["pred_state", g.const("p_rt", p.r_t), g.const("p_rb", p.r_b)]), p.hidden,
                 name="pred_state_out")
    pred_logits = g.one("Gemm", [hp2, g.const("p_head_w", p.head_w), g.const("p_head_b", p.head_b)])
    pred_logp = g.one("LogSoftmax", [pred_logits], name="pred_logp", axis=1)
    g.nodes.append(helper.make_node("TopK", [pred_logp, g.const("k", np.array([CANDIDATES], np.int64))],
                                    ["cand_logp", "cand"], axis=1, largest=1, sorted=1))
    # 2. The duet model's step at t - 1 on the real tokens (duet_rows: performer, partner's of t - 2, voice,
    # position). Its recurrent gates for duet_state came with it (``duet_gates``: the last call's peek made them).
    d_rb = g.const("d_rb", d.r_b)
    hd2 = g.cell("d", gate_sum(d_table, "duet_rows"), "duet_state", g.one("Add", ["duet_gates", d_rb]), d.hidden,
                 name="duet_state_out")
    # 3. Its answer at t to each candidate and to HOLD, from that state: one recurrent product for every row, kept
    # for the next call's step 2.
    gates = g.one("MatMul", [hd2, g.const("d_rt", d.r_t)], name="duet_gates_out")
    peek = g.one("Concat", ["cand", g.const("hold", np.array([[melody.HOLD]], np.int64))], axis=1)  # [1, K + 1]
    gi = g.one("Add", [g.one("Gather", [d_table, g.one("Add", [peek, g.const("d_performer_at", np.array(
        d_at["model.performer_emb.weight"], np.int64))])]), gate_sum(d_table, "peek_rows")])  # [1, K + 1, 3H]
    h_rows = g.cell("k", gi, hd2, g.one("Add", [gates, d_rb]), d.hidden)
    logits = g.one("Add", [g.one("MatMul", [h_rows, g.const("d_head_w", d.head_w)]), g.const("d_head_b", d.head_b)])
    g.one("LogSoftmax", [g.one("Squeeze", [logits, ax0])], name="rows", axis=1)

    i64, f32 = TensorProto.INT64, TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("pred_rows", i64, [4]), helper.make_tensor_value_info("duet_rows", i64, [4]),
              helper.make_tensor_value_info("peek_rows", i64, [3]),
              helper.make_tensor_value_info("pred_state", f32, [1, p.hidden]),
              helper.make_tensor_value_info("duet_state", f32, [1, d.hidden]),
              helper.make_tensor_value_info("duet_gates", f32, [1, 3 * d.hidden])]
    outputs = [helper.make_tensor_value_info("rows", f32, [CANDIDATES + 1, melody.NUM_CLASSES]),
               helper.make_tensor_value_info("cand", i64, [1, CANDIDATES]),
               helper.make_tensor_value_info("pred_logp", f32, [1, melody.NUM_CLASSES]),
               helper.make_tensor_value_info("pred_state_out", f32, [1, p.hidden]),
               helper.make_tensor_value_info("duet_state_out", f32, [1, d.hidden]),
               helper.make_tensor_value_info("duet_gates_out", f32, [1, 3 * d.hidden])]
    graph = helper.make_graph(g.nodes, "duet_anticipation", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="export.fuse_duet")
    names = {"model.token_emb.weight": "token", "model.back1_emb.weight": "back1", "model.back2_emb.weight": "back2",
             "model.performer_emb.weight": "performer", "model.partner_emb.weight": "partner",
             "model.voice_emb.weight": "voice", "pos": "pos"}
    tables = {"predictor": {names[k]: v for k, v in p_at.items()}, "duet": {names[k]: v for k, v in d_at.items()}}
    meta = build_metadata(
        name=out_path.stem, family="duet_anticipation", steps_per_beat=d.info.steps_per_beat, inputs=INPUTS,
        outputs=OUTPUTS, state_shape=[1, d.hidden], training_data=d.info.training_data, split=d.info.split,
        metrics=d.info.metrics, training={"fused_by": "python -m export.fuse_duet"},
        extra={"fused_from": json.dumps({"duet": sha256(duet_path), "predictor": sha256(predictor_path)}),
               "predictor_state_shape": json.dumps([1, p.hidden]), "candidates": str(CANDIDATES),
               "fused_tables": json.dumps(tables)})
    for key, value in sorted(meta.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return out_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = shipped_models_dir()
    ap.add_argument("--duet", type=Path, default=models / "duet_dnn.onnx")
    ap.add_argument("--predictor", type=Path, default=models / "soprano_dnn.onnx")
    ap.add_argument("--out", type=Path, default=models / "duet_anticipation.onnx")
    args = ap.parse_args(argv)
    out = fuse(args.duet, args.predictor, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from {args.duet.name} + {args.predictor.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
