"""Recording fakes and small builders shared by the virtual-time tests."""

from __future__ import annotations

import numpy as np

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.loop import ScriptedInput, run_loop
from liveperf.modes.call_response import CallAndResponse, ModeSettings
from liveperf.music.notes import describe, note_off, note_on
from liveperf.music.sampler import new_rng_state
from liveperf.music.scales import parse_key, token_mask
from liveperf.timing.virtual_scheduler import VirtualScheduler

STEP_NS_120 = 125_000_000  # one 16th at 120 BPM


class ScriptedStepper:
    """A fake step model: after the n-th feed since reset, it strongly prefers ``script.get(n, HOLD)``.

    Feed n carries the token of phrase step n-1, so its logits predict phrase step n. Records every feed.
    """

    steps_per_beat = 4

    def __init__(self, script: dict[int, int], fail_at: int | None = None, strength: float = 20.0) -> None:
        self.script = script
        self.fail_at = fail_at
        self.strength = strength  # the scripted token's logit (every other token: 0)
        self.fed: list[tuple[int, int]] = []
        self.resets = 0
        self._n = 0
        self.forks: list[int] = []  # candidates of every fork (answer plans)
        self.batches: list = []

    def reset(self) -> None:
        self.resets += 1
        self._n = 0

    def feed(self, token: int, pos: int) -> np.ndarray:
        from liveperf.models.step_model import StepError

        self.fed.append((token, pos))
        self._n += 1
        if self.fail_at is not None and len(self.fed) == self.fail_at:
            raise StepError("scripted failure")
        logits = np.zeros(melody.NUM_CLASSES, dtype=np.float32)
        logits[self.script.get(self._n, melody.HOLD)] = self.strength
        return logits

    def fork(self, n: int) -> "ScriptedBatch":
        self.forks.append(n)
        return ScriptedBatch(self, n)


class ScriptedBatch:
    """``ScriptedStepper.fork``: n rows that all go on with the parent's script from its current feed count
    (the script ignores what is fed, like the parent). Records every batched feed as (tokens, step)."""

    def __init__(self, parent: ScriptedStepper, n: int) -> None:
        self.parent, self.n, self._n = parent, n, parent._n
        self.fed: list[tuple[list[int], int]] = []
        parent.batches.append(self)

    def feed(self, tokens, step: int) -> np.ndarray:
        self.fed.append(([int(t) for t in tokens], step))
        self._n += 1
        logits = np.zeros((self.n, melody.NUM_CLASSES), dtype=np.float32)
        logits[:, self.parent.script.get(self._n, melody.HOLD)] = self.parent.strength
        return logits


def settings(**over) -> ModeSettings:
    base = dict(channel=0, allowed=token_mask(parse_key("C major"), 48, 84), temperature=0.0, top_k=0, top_p=1.0,
                silence_steps=4, response_steps=16, velocity=None, max_note_steps=16)
    base.update(over)
    return ModeSettings(**base)


def performer(notes: list[tuple[float, float, int, int]], step_ns: int = STEP_NS_120) -> list[tuple[int, bytes]]:
    """(start_step, end_step, pitch, velocity) with fractional steps -> timed raw messages."""
    events = []
    for start, end, pitch, vel in notes:
        events.append((int(start * step_ns), note_on(0, pitch, vel)))
        events.append((int(end * step_ns), note_off(0, pitch)))
    return events


def run_virtual(events, stepper, tempo_bpm: float = 120.0, steps: int = 64, lookahead_ns: int = 8_000_000,
                trigger_cc: int | None = None, seed: int = 0, guard=None, planner=None, **over):
    """Play ``events`` through a call-and-response engine in virtual time; return (wire, mode, scheduler).
    ``planner``: None (plans at once), or a callable given the virtual clock (``now_ns``) that returns one."""
    clock = InternalClock(tempo_bpm, 4, 0)
    source = ScriptedInput(events)
    sched = VirtualScheduler(now_fn=source.now_ns)
    extra = {} if planner is None else {"planner": planner(source.now_ns)}
    mode = CallAndResponse(settings(**over), stepper, clock, sched, new_rng_state(seed), guard=guard, **extra)
    engine = Engine(mode, trigger_cc=trigger_cc)
    last = run_loop(engine, clock, source, lookahead_ns=lookahead_ns, stop_at_step=steps, stop_when_done=False)
    engine.stop(clock.ns_at_step(last))
    sched.close(clock.ns_at_step(last))
    return [(t, describe(d)) for t, d in sched.sent], mode, sched


class ScriptedDuet:
    """A fake duet stepper: the n-th ``feed`` since reset prefers ``script.get(n, HOLD)``; ``peek`` prefers the
    pitches in ``ranking`` (first = most likely), relative to the performer's pitch. Records every call."""

    steps_per_beat = 4

    def __init__(self, script: dict[int, int] | None = None, ranking: tuple[int, ...] = (), fail_at: int | None = None):
        self.script = script or {}
        self.ranking = ranking
        self.fail_at = fail_at
        self.fed: list[tuple[int, int, int, int]] = []
        self.peeked: list[tuple[int, int, int, int]] = []
        self.resets = 0
        self._n = 0

    def reset(self) -> None:
        self.resets += 1
        self._n = 0

    def feed(self, performer, partner_prev, voice, pos) -> np.ndarray:
        from liveperf.models.step_model import StepError

        self.fed.append((int(performer), int(partner_prev), int(voice), int(pos)))
        self._n += 1
        if self.fail_at is not None and len(self.fed) == self.fail_at:
            raise StepError("scripted failure")
        logits = np.zeros(melody.NUM_CLASSES, dtype=np.float32)
        logits[self.script.get(self._n, melody.HOLD)] = 20.0
        return logits

    def peek(self, performer, partner_prev, voice, pos) -> np.ndarray:
        self.peeked.append((int(performer), int(partner_prev), int(voice), int(pos)))
        pitch = melody.pitch_of(int(performer))
        logits = np.full(melody.NUM_CLASSES, -50.0, dtype=np.float32)
        for rank, offset in enumerate(self.ranking):
            if 0 <= pitch + offset <= 127:
                logits[melody.on(pitch + offset)] = 20.0 - rank
        return logits


class FixedPhrases:
    """A fake ``PhraseSource``: returns ``phrases[i % len]`` for the i-th phrase; records the history it saw."""

    phrase_steps = 32

    def __init__(self, phrases: list[list[int]], fail_at: int | None = None) -> None:
        self.phrases = phrases
        self.fail_at = fail_at
        self.histories: list[list[int]] = []
        self.fallbacks = 0

    def next_phrase(self, settings, history, rng_state):
        from liveperf.models.step_model import StepError

        self.histories.append([int(t) for t in history])
        if self.fail_at is not None and len(self.histories) == self.fail_at:
            raise StepError("scripted phrase failure")
        tokens = self.phrases[(len(self.histories) - 1) % len(self.phrases)]
        return np.asarray(tokens + [melody.HOLD] * (32 - len(tokens)), dtype=np.int64)


def run_engine(events, engine_factory, clock, steps: int | None = 64, lookahead_ns: int = 8_000_000,
               stop_when_done: bool = False, requests=()):
    """Run an engine made by ``engine_factory(clock, sink, now_fn)`` over ``events`` in virtual time.

    ``requests``: (at_step, callable(engine)) control changes applied when the loop reaches that step.
    Returns (wire as (ns, describe), engine, scheduler)."""
    source = ScriptedInput(events)
    sched = VirtualScheduler(now_fn=source.now_ns)
    engine = engine_factory(clock, sched, source.now_ns)
    pending = sorted(requests, key=lambda r: r[0])
    state = {"i": 0}
    original = engine.on_step

    def on_step(step):
        while state["i"] < len(pending) and pending[state["i"]][0] <= step:
            pending[state["i"]][1](engine)
            state["i"] += 1
        original(step)

    engine.on_step = on_step
    last = run_loop(engine, clock, source, lookahead_ns=lookahead_ns, stop_at_step=steps,
                    stop_when_done=stop_when_done)
    end = source.now_ns() if not clock.running else clock.ns_at_step(last)
    engine.stop(end)
    sched.close(end)
    return [(t, describe(d)) for t, d in sched.sent], engine, sched
