"""Time: the internal and MIDI clocks (integer ns <-> steps), tap tempo, MIDI clock out, the scheduler that sends
(due_ns, message) on time and its virtual twin for tests. Imports ``liveperf.music`` (held notes) and nothing above."""
