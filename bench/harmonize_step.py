"""Harmonize mode's in-process reaction: one performer note-on -> duet model peek + masked sampling + schedule.

    python -m bench.harmonize_step

3,000 note-ons (the first 500 are warm-up), the model stepped every grid step in between as in a show; prints
p50 / p99 / max in microseconds. The wire's reaction latency (through JACK) adds the transport on top.
"""
import time, numpy as np
from liveperf.timing.clock import InternalClock
from liveperf.models.phrase_models import DuetStepper
from liveperf.modes.harmonize import Harmonize
from liveperf.modes.settings import ModeSettings
from liveperf.music.scales import parse_key, token_mask
from liveperf.music.sampler import new_rng_state
from liveperf.timing.virtual_scheduler import VirtualScheduler
s = ModeSettings(channel=1, allowed=token_mask(parse_key("C major"), 36, 84), temperature=0.9, top_k=0, top_p=0.95,
                 silence_steps=4, response_steps=16, velocity=None, max_note_steps=16)
clock = InternalClock(120, 4, 0); sink = VirtualScheduler()
h = Harmonize(s, DuetStepper.load(), clock, sink, new_rng_state(0))
pitches = [60, 62, 64, 65, 67, 69, 71, 72]
lat = []
for i in range(3000):
    ts = i * 125_000_000
    h.on_step(i)
    t0 = time.perf_counter_ns(); h.note_on(ts, pitches[i % 8], 90); lat.append(time.perf_counter_ns() - t0)
    h.note_off(ts + 60_000_000, pitches[i % 8])
lat = np.array(lat[500:]) / 1e3
print(f"harmonize note-on (duet model peek + masked sampling + schedule): n={lat.size} p50 {np.percentile(lat,50):.0f} us, p99 {np.percentile(lat,99):.0f} us, max {lat.max():.0f} us; harmonies {h.stats.harmonies}")
