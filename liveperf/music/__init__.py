"""The music core: the melody representation, keys and scales, held notes, the sampler's kernels, chords, the key
finder, style attributes, dynamics, feel and the copy guard. Pure functions and small owned objects on integer
steps; nothing here knows about threads, ports or the show. Imports only numpy/numba and itself."""
