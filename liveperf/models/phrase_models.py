"""Runtime wrappers for the phrase models (VAE, GAN) and the duet stepper, over ONNX files; no torch.

- ``VaeModel``: ``encode`` phrases -> (mu, logvar); ``decode_logits`` z -> [B, 32, 130]; ``decode`` z -> tokens;
  ``interpolate`` and ``variation``.
- ``GanModel``: ``sample`` phrases from z ~ N(0, I); ``score`` phrases with the critic; ``best_of`` K candidates.
- ``DuetStepper``: the partner voice, one step at a time (like ``step_model.OnnxStepper``).

Tokens are ``liveperf.melody`` tokens; a phrase is int64 [B, T] (T = the model's ``phrase_steps``, 32 = two 4/4
bars of 16ths). Every draw goes through ``liveperf.music.sampler.sample`` with a caller-owned ``rng_state``
(``sampler.new_rng_state(seed)``), so the same seed and inputs give the same notes:

- decoding a phrase samples each step on its own from that step's logits (the decoders are non-autoregressive),
  in order: phrase 0 step 0, step 1, ..., phrase 1 step 0, ...; one draw per step (greedy at ``temperature`` 0);
- Gaussian noise (GAN z, VAE variation) comes from ``numpy.random.default_rng(seed)`` where ``seed`` is the
  ``rng_state`` value before the call; ``rng_state`` is then advanced by one draw, so consecutive calls get fresh
  noise and the whole stream still hangs on the one state;
- after sampling, each phrase is passed through ``melody.canonical`` (an ``OFF`` while already silent becomes
  ``HOLD``): the one post-rule, so a decoded phrase has exactly one token sequence for what it sounds like. HOLD
  after silence is already consistent in this representation (silence goes on).

``allowed`` is a bool/uint8 mask over the 130 tokens (``scales.token_mask``), either (130,) for every step or
(T, 130) per step; ``None`` allows everything. A step whose mask leaves no candidate gets ``HOLD``.
Loading (``load_*``) validates family and I/O names and raises ``ModelLoadError`` naming the file; it happens at
start-up, never on the engine's hot path. Objects are used by one thread (the engine thread, or a worker that owns
them); they keep no hidden global state.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
from numba import types

from liveperf.music import melody, sampler, style
from liveperf.models.metadata import PREFIX
from liveperf.models.onnx_model import LoadedModel, ModelLoadError, load_model, resolve_model_path
from liveperf.models.step_model import StepError

VAE_ENCODER = ("vae_encoder", ("phrase",), ("mu", "logvar"))
VAE_DECODER = ("vae_decoder", ("z",), ("logits",))
GAN_GENERATOR = ("gan_generator", ("z",), ("logits",))
GAN_CRITIC = ("gan_critic", ("phrase_onehot",), ("score",))
DUET_STEP = ("duet_step", ("performer_token", "partner_prev", "voice", "pos", "state"), ("logits", "state_out"))
DUET_VOICES = {"bass": 0, "tenor": 1, "alto": 2}


def _checked(model: LoadedModel, contract: tuple) -> LoadedModel:
    family, inputs, outputs = contract
    info = model.info
    if info.family != family or info.inputs != inputs or info.outputs != outputs:
        raise ModelLoadError(
            f"{model.path}: family {info.family!r} with inputs {info.inputs} -> {info.outputs}; expected {family!r} "
            f"with inputs {inputs} -> {outputs}"
        )
    return model


def _checked_stepper(model: LoadedModel, contract: tuple) -> LoadedModel:
    """``_checked``, and a state of shape [layers, hidden] (the step models: duet, comp)."""
    _checked(model, contract)
    if len(model.info.state_shape) != 2:
        raise ModelLoadError(f"{model.path}: state_shape {model.info.state_shape} must be [layers, hidden]")
    return model


def _load(name_or_path: str | Path, contract: tuple, provider: str) -> LoadedModel:
    return _checked(load_model(resolve_model_path(str(name_or_path)), provider), contract)


def _static_dim(model: LoadedModel, io: str, index: int, axis: int) -> int:
    """A fixed dimension of a graph input/output (e.g. the latent size), or ModelLoadError."""
    args = model.session.get_inputs() if io == "in" else model.session.get_outputs()
    dim = args[index].shape[axis]
    if not isinstance(dim, int):
        raise ModelLoadError(f"{model.path}: {args[index].name} axis {axis} must be fixed, got {dim!r}")
    return dim


def noise_generator(rng_state: np.ndarray) -> np.random.Generator:
    """A numpy Generator seeded from ``rng_state`` (its value before the call), which is advanced by one draw."""
    seed = int(rng_state[0])
    sampler.next_uniform(rng_state)
    return np.random.default_rng(seed)


def _phrases(tokens, steps: int) -> np.ndarray:
    arr = np.asarray(tokens, dtype=np.int64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != steps:
        raise ValueError(f"phrases must be [B, {steps}] tokens, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= melody.NUM_CLASSES):
        raise ValueError(f"tokens outside 0..{melody.NUM_CLASSES - 1}")
    return arr


def _step_masks(allowed, steps: int) -> np.ndarray:
    """``allowed`` as a C-contiguous bool array [steps, 130]."""
    if allowed is None:
        return np.ones((steps, melody.NUM_CLASSES), dtype=bool)
    mask = np.asarray(allowed)
    if mask.shape == (melody.NUM_CLASSES,):
        mask = np.broadcast_to(mask, (steps, melody.NUM_CLASSES))
    if mask.shape != (steps, melody.NUM_CLASSES):
        raise ValueError(f"allowed must be (130,) or ({steps}, 130), got {mask.shape}")
    return np.ascontiguousarray(mask, dtype=bool)


@numba.njit(types.void(types.float32[:, :, ::1], types.boolean[:, ::1], types.float64, types.int64, types.float64,
                       types.uint64[::1], types.int64[:, ::1]), cache=True, nogil=True)
def _sample_steps(logits, masks, temperature, top_k, top_p, rng_state, out):  # pragma: no cover (compiled)
    """out[b * r + k, t] = the k-th of r = ``out.shape[0] // B`` draws (``sampler.sample_repeated``) from
    logits[b, t] with masks[t], in (b, t, k) order (r = 1: one ``sampler.sample`` per step in (b, t) order), then
    each row made canonical (the loop of ``melody.canonical``: an OFF while silent becomes HOLD)."""
    batch, steps = logits.shape[0], logits.shape[1]
    r = out.shape[0] // batch
    drawn = np.empty(r, dtype=np.int64)
    for b in range(batch):
        for t in range(steps):
            sampler.sample_repeated(logits[b, t], masks[t], temperature, top_k, top_p, rng_state, melody.HOLD, drawn)
            for k in range(r):
                out[b * r + k, t] = drawn[k]
    for row in range(out.shape[0]):
        sounding = False
        for t in range(steps):
            tok = out[row, t]
            if tok >= melody.PITCH_OFFSET:
                sounding = True
            elif tok == melody.OFF:
                if not sounding:
                    out[row, t] = melody.HOLD
                sounding = False


def sample_phrases(logits: np.ndarray, allowed, temperature: float, top_k: int, top_p: float,
                   rng_state: np.ndarray, repeat: int = 1) -> np.ndarray:
    """Tokens [B * repeat, T] from per-step logits [B, T, 130]: ``repeat`` draws per step of each row (rows
    ``b * repeat .. b * repeat + repeat - 1`` share row b's logits; the distribution is computed once per step),
    then ``canonical``. ``repeat`` 1: one ``sampler.sample`` per step."""
    if not np.isfinite(logits).all():
        raise StepError("phrase logits are not finite")
    batch, steps, _ = logits.shape
    out = np.empty((batch * max(1, int(repeat)), steps), dtype=np.int64)
    _sample_steps(np.ascontiguousarray(logits, dtype=np.float32), _step_masks(allowed, steps), float(temperature),
                  int(top_k), float(top_p), rng_state, out)
    return out


class VaeModel:
    """A 2-bar phrase VAE: encoder and decoder ONNX files (``melody_vae_encoder`` / ``melody_vae_decoder``)."""

    def __init__(self, encoder: LoadedModel, decoder: LoadedModel):
        self.encoder, self.decoder = _checked(encoder, VAE_ENCODER), _checked(decoder, VAE_DECODER)
        self.phrase_steps = _static_dim(encoder, "in", 0, 1)
        self.latent_dim = _static_dim(decoder, "in", 0, 1)
        if _static_dim(decoder, "out", 0, 1) != self.phrase_steps or _static_dim(encoder, "out", 0, 1) != \
                self.latent_dim:
            raise ModelLoadError(f"{encoder.path} and {decoder.path} do not fit together (phrase length / latent)")
        self.steps_per_beat = decoder.info.steps_per_beat
        raw = decoder.session.get_modelmeta().custom_metadata_map.get(PREFIX + style.METADATA_KEY)
        self.directions = self.mix = None  # the style knobs' (liveperf.music.style); without them: decoded unmoved
        if raw is not None:
            try:
                self.directions, self.mix = style.parse_directions(raw, self.latent_dim, str(decoder.path))
            except ValueError as exc:
                raise ModelLoadError(str(exc)) from None

    @classmethod
    def load(cls, encoder: str | Path = "melody_vae_encoder", decoder: str | Path = "melody_vae_decoder",
             provider: str = "cpu") -> "VaeModel":
        return cls(_load(encoder, VAE_ENCODER, provider), _load(decoder, VAE_DECODER, provider))

    def encode(self, phrases) -> tuple[np.ndarray, np.ndarray]:
        """Token phrases [B, T] (or one phrase [T]) -> (mu, logvar), float32 [B, Z]."""
        mu, logvar = self.encoder.session.run(None, {"phrase": _phrases(phrases, self.phrase_steps)})
        return mu, logvar

    def decode_logits(self, z) -> np.ndarray:
        """z [B, Z] (or [Z]) -> float32 logits [B, T, 130]."""
        z = np.asarray(z, dtype=np.float32)
        z = z[None] if z.ndim == 1 else z
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [B, {self.latent_dim}], got shape {z.shape}")
        return self.decoder.session.run(None, {"z": np.ascontiguousarray(z)})[0]

    def decode(self, z, allowed=None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               rng_state: np.ndarray | None = None) -> np.ndarray:
        """z [B, Z] -> tokens [B, T]; ``temperature`` 0 = argmax per step (``rng_state`` may then be None)."""
        state = rng_state if rng_state is not None else sampler.new_rng_state(0)
        if rng_state is None and temperature > 0:
            raise ValueError("decode with temperature > 0 needs an explicit rng_state")
        return sample_phrases(self.decode_logits(z), allowed, temperature, top_k, top_p, state)

    @staticmethod
    def interpolate(z1, z2, t) -> np.ndarray:
        """Linear interpolation: z1 + t (z2 - z1); ``t`` a float or an array of K floats -> [Z] or [K, Z]."""
        z1, z2 = np.asarray(z1, dtype=np.float32), np.asarray(z2, dtype=np.float32)
        t = np.asarray(t, dtype=np.float32)
        if t.ndim == 0:
            return z1 + t * (z2 - z1)
        return z1[None] + t[:, None] * (z2 - z1)[None]

    def variation(self, phrase, sigma: float, rng_state: np.ndarray, allowed=None, temperature: float = 0.0,
                  top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
        """Encode ``phrase`` [T] (or [B, T]), add N(0, sigma^2) noise to mu, decode -> tokens [B, T]."""
        mu, _ = self.encode(phrase)
        z = mu + np.float32(sigma) * noise_generator(rng_state).standard_normal(mu.shape).astype(np.float32)
        return self.decode(z, allowed, temperature, top_k, top_p, rng_state)


class GanModel:
    """A 2-bar phrase GAN: generator and critic ONNX files (``melody_gan_generator`` / ``melody_gan_critic``)."""

    def __init__(self, generator: LoadedModel, critic: LoadedModel):
        self.generator, self.critic = _checked(generator, GAN_GENERATOR), _checked(critic, GAN_CRITIC)
        self.latent_dim = _static_dim(generator, "in", 0, 1)
        self.phrase_steps = _static_dim(generator, "out", 0, 1)
        if _static_dim(critic, "in", 0, 1) != self.phrase_steps:
            raise ModelLoadError(f"{generator.path} and {critic.path} differ in phrase length")
        self.steps_per_beat = generator.info.steps_per_beat

    @classmethod
    def load(cls, generator: str | Path = "melody_gan_generator", critic: str | Path = "melody_gan_critic",
             provider: str = "cpu") -> "GanModel":
        return cls(_load(generator, GAN_GENERATOR, provider), _load(critic, GAN_CRITIC, provider))

    def draw_z(self, n: int, rng_state: np.ndarray) -> np.ndarray:
        """z ~ N(0, I), float32 [n, Z], from ``noise_generator(rng_state)``."""
        return noise_generator(rng_state).standard_normal((n, self.latent_dim)).astype(np.float32)

    def logits(self, z) -> np.ndarray:
        return self.generator.session.run(None, {"z": np.ascontiguousarray(z, dtype=np.float32)})[0]

    def sample(self, n: int, rng_state: np.ndarray, temperature: float = 0.0, allowed=None, top_k: int = 0,
               top_p: float = 1.0) -> np.ndarray:
        """``n`` phrases [n, T]: z drawn as ``draw_z``, then per step argmax (``temperature`` 0, the default: the
        generator was trained towards one-hot outputs) or a sample."""
        return sample_phrases(self.logits(self.draw_z(n, rng_state)), allowed, temperature, top_k, top_p,
                              rng_state)

    def score(self, phrases) -> np.ndarray:
        """Critic scores float32 [K] of token phrases [K, T] (higher = more like the training phrases)."""
        arr = _phrases(phrases, self.phrase_steps)
        onehot = np.zeros(arr.shape + (melody.NUM_CLASSES,), dtype=np.float32)
        np.put_along_axis(onehot, arr[..., None], 1.0, axis=-1)
        return self.critic.session.run(None, {"phrase_onehot": onehot})[0]

    def best_of(self, k: int, rng_state: np.ndarray, temperature: float = 0.0, allowed=None, top_k: int = 0,
                top_p: float = 1.0) -> tuple[np.ndarray, float]:
        """Sample ``k`` phrases (as ``sample``), return (the one with the highest critic score [T], its score);
        ties go to the first."""
        phrases = self.sample(k, rng_state, temperature, allowed, top_k, top_p)
        scores = self.score(phrases)
        best = int(np.argmax(scores))
        return phrases[best], float(scores[best])


class DuetStepper:
    """The partner voice one step at a time over a ``duet_step`` model; owns its state [L, B, H].

    ``feed(performer_token, partner_prev, voice, pos)``: the performer's token at step t - ``performer_lag_steps``
    (the model's metadata: 0 for a model that hears the performer's note of the same step, 1 for one trained the way
    the live duet hears it), the partner's token at t - 1 (``HOLD`` at the first step), the voice (0 bass, 1 tenor,
    2 alto, ``DUET_VOICES``) and the song step t (the stepper makes the model's position input of it for ``meter``); returns float32 logits for the partner's token at t: (130,) when every argument
    is a scalar, else [B, 130] (B = ``batch``). A failed or non-finite step raises ``StepError`` and keeps the
    previous state.
    """

    def __init__(self, model: LoadedModel, batch: int = 1, meter: tuple[int, int] = (4, 4)):
        _checked_stepper(model, DUET_STEP)
        self.model = model
        self.steps_per_beat = model.info.steps_per_beat
        self.meter = tuple(meter)
        self.version = model.info.representation_version
        #: steps the performer input lags the partner's step: 1 = trained as the live duet hears (causal)
        self.performer_lag_steps = model.info.performer_lag_steps
        self._position = melody.position_coder(self.meter, self.steps_per_beat, self.version)
        self._session = model.session
        self.reset(batch)

    @classmethod
    def load(cls, name_or_path: str | Path = "duet_dnn", batch: int = 1, provider: str = "cpu") -> "DuetStepper":
        return cls(_load(name_or_path, DUET_STEP, provider), batch)

    def reset(self, batch: int | None = None) -> None:
        """Back to the start state (zeros), optionally for a new batch size."""
        self.batch = self.batch if batch is None else int(batch)
        layers, hidden = self.model.info.state_shape
        self._state = np.zeros((layers, self.batch, hidden), dtype=np.float32)

    @property
    def state(self) -> np.ndarray:
        return self._state

    def peek(self, performer_token, partner_prev, voice, pos) -> np.ndarray:
        """Like ``feed`` but keeps the state as it was: "what would the partner play if this came now?"."""
        state = self._state
        try:
            return self.feed(performer_token, partner_prev, voice, pos)
        finally:
            self._state = state

    def peek_many(self, performer_tokens: np.ndarray, partner_prev: int, voice: int, positions: np.ndarray,
                  with_states: bool = False):
        """``peek`` for many rows at once (batch 1 stepper): row i answers ``performer_tokens[i]`` at ``positions[i]``
        from the current state; returns [N, 130] (and, ``with_states``, the N states after each row, [L, N, H], for
        ``set_state``); the state is unchanged. One batched call costs far less than N calls (measured: 70 rows
        ~0.9 ms vs 70 x 0.08 ms), and none of it on the path of a later lookup."""
        if self.batch != 1:
            raise ValueError("peek_many needs a batch-1 stepper")
        n = len(performer_tokens)
        layers, _, hidden = self._state.shape
        feeds = {"performer_token": np.ascontiguousarray(performer_tokens, dtype=np.int64),
                 "partner_prev": np.full(n, partner_prev, dtype=np.int64),
                 "voice": np.full(n, voice, dtype=np.int64),
                 "pos": np.ascontiguousarray(self._positions(np.asarray(positions, dtype=np.int64))),
                 "state": np.ascontiguousarray(np.broadcast_to(self._state, (layers, n, hidden)))}
        try:
            logits, states = self._session.run(None, feeds)
        except Exception as exc:  # onnxruntime's own exception types are private
            raise StepError(f"{self.model.path.name}: step failed ({type(exc).__name__}: {exc})") from exc
        if logits.shape != (n, melody.NUM_CLASSES) or not np.isfinite(logits).all():
            raise StepError(f"{self.model.path.name}: non-finite or mis-shaped logits {logits.shape}")
        return (logits, states) if with_states else logits

    def set_state(self, state: np.ndarray) -> None:
        """Take a state [L, 1, H] from ``peek_many(..., with_states=True)``: the same as feeding that row's inputs,
        without running the model again (batch 1 stepper)."""
        if self.batch != 1 or state.shape != self._state.shape:
            raise ValueError(f"state shape {state.shape}, this stepper's is {self._state.shape}")
        self._state = np.ascontiguousarray(state, dtype=np.float32)

    def position(self, step: int) -> int:
        """The model's ``pos`` input at song ``step``."""
        return self._position(step)

    def _positions(self, steps: np.ndarray) -> np.ndarray:
        """The model's ``pos`` input at song ``steps`` (``melody.position_codes`` for its version)."""
        return melody.position_codes(steps, self.meter, self.steps_per_beat, self.version)

    def feed(self, performer_token, partner_prev, voice, pos) -> np.ndarray:
        scalar = all(np.ndim(x) == 0 for x in (performer_token, partner_prev, voice, pos))
        feeds = {name: np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.int64), (self.batch,)))
                 for name, value in (("performer_token", performer_token), ("partner_prev", partner_prev),
                                     ("voice", voice), ("pos", self._positions(np.asarray(pos))))}
        feeds["state"] = self._state
        try:
            logits, state = self._session.run(None, feeds)
        except Exception as exc:  # onnxruntime's own exception types are private
            raise StepError(f"{self.model.path.name}: step failed ({type(exc).__name__}: {exc})") from exc
        if logits.shape != (self.batch, melody.NUM_CLASSES) or not np.isfinite(logits).all():
            raise StepError(f"{self.model.path.name}: non-finite or mis-shaped logits {logits.shape}")
        self._state = state
        return logits[0] if scalar and self.batch == 1 else logits
