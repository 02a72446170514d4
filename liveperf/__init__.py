"""liveperf: a real-time MIDI performer that plays with a musician on stage.

Layers (lower never imports higher): melody, sampler, scales, clock, notes -> models, setlist, scheduler, io ->
modes, engine -> show, cli. ``export/`` and ``bench/`` import liveperf, never the reverse.
"""

__version__ = "0.1.0"
