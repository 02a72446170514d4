"""The stage view: what the performer sees (``view``, drawn in a terminal), its plain-text fallback (``display``) and
its keys (``keys``, sent to the show as OSC). Imports ``params`` and ``liveperf.io.osc_protocol``."""
