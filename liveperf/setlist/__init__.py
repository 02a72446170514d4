"""A show's setlist (TOML): the schema and loader (``schema``), field checks (``fields``), several partners per song
(``partners``), advice that is not an error (``lint``) and writing learned mappings back (``write``). Low in the
import graph: the modes, the engine, io and the show read songs; the setlist imports only ``params`` and
``liveperf.music``."""
