"""The show: the composition root that wires setlist, models, clock, engine and I/O together (``run``), show
control (``control``: parameters, song changes, MIDI learn), model and take loading (``load``), the stage view's
feed (``stage``), the report (``report``) and rate-limited logging (``log_limit``). The top floor: nothing in
``liveperf`` imports it but the CLI and ``check`` (which loads songs the way a show does)."""
