"""Keys and scales, and the token masks the sampler uses to keep a line in key and in an instrument's range.

A ``Key`` is a root pitch class (0 = C .. 11 = B) plus a scale name; ``parse_key`` reads the setlist spelling
("F# minor", "Bb mixolydian", "A harmonic_minor"). ``token_mask`` turns a key and a pitch range (MIDI note
numbers, 0..127) into a boolean mask over the 130 melody tokens (see ``liveperf.music.melody``).

Plain values and functions, no state, no threads: the setlist loader parses keys once at load time (its
``ValueError`` messages are shown to users), and the engine builds masks when a song or range changes, never per
step. Masks are new arrays owned by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from liveperf.music.melody import HOLD, NUM_CLASSES, NUM_PITCHES, OFF, PITCH_OFFSET

#: Scale name -> semitone intervals above the root (ascending, starting at 0). Canonical names only.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic_minor": (0, 2, 3, 5, 7, 9, 11),  # the ascending (jazz) form
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "chromatic": tuple(range(12)),
}

#: Other accepted names -> canonical scale name.
SCALE_ALIASES: dict[str, str] = {"ionian": "major", "aeolian": "minor"}

#: Accepted root spellings -> pitch class. Matching is case-insensitive; "♯"/"♭" are read as "#"/"b".
ROOTS: dict[str, int] = {
    "Cb": 11, "C": 0, "C#": 1,
    "Db": 1, "D": 2, "D#": 3,
    "Eb": 3, "E": 4, "E#": 5,
    "Fb": 4, "F": 5, "F#": 6,
    "Gb": 6, "G": 7, "G#": 8,
    "Ab": 8, "A": 9, "A#": 10,
    "Bb": 10, "B": 11, "B#": 0,
}  # fmt: skip

#: Default spelling of each pitch class, used when a Key is built from a number.
ROOT_SPELLING: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

_ROOTS_LOWER = {name.lower(): pc for name, pc in ROOTS.items()}


@dataclass(frozen=True)
class Key:
    """A root pitch class and a scale; ``pitch_classes`` (sorted, 0..11) is derived from them.

    ``root_name`` is only the spelling shown by ``str()`` ("Gb minor" vs "F# minor"); two keys with the same root
    and scale are equal whatever their spelling.
    """

    root: int
    scale: str
    root_name: str = field(default="", compare=False)
    pitch_classes: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.root, bool) or not isinstance(self.root, int) or not 0 <= self.root <= 11:
            raise ValueError(f"key root must be a pitch class 0..11, got {self.root!r}")
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; {_allowed_text()}")
        if not self.root_name:
            object.__setattr__(self, "root_name", ROOT_SPELLING[self.root])
        pcs = tuple(sorted((self.root + i) % 12 for i in SCALES[self.scale]))
        object.__setattr__(self, "pitch_classes", pcs)

    def __str__(self) -> str:
        return f"{self.root_name} {self.scale}"

    def contains(self, pitch: int) -> bool:
        """Whether MIDI pitch ``pitch`` (any octave) is in this key."""
        return pitch % 12 in self.pitch_classes


def _allowed_text() -> str:
    roots = ", ".join(ROOTS)
    scales = ", ".join(list(SCALES) + [f"{a} (= {c})" for a, c in SCALE_ALIASES.items()])
    return f"roots: {roots}; scales: {scales}"


def _normalise_scale(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())


def parse_key(text: str) -> Key:
    """Parse "ROOT SCALE", e.g. "C major", "f# Minor", "Bb mixolydian", "A harmonic minor".

    Case-insensitive; the root is a letter A-G with an optional "#"/"b" (or "♯"/"♭"); the scale name may use
    spaces, hyphens or underscores between words. Raises ``ValueError`` naming the bad part and listing the
    allowed roots and scale names.
    """
    if not isinstance(text, str):
        raise ValueError(f"key must be a string like 'C major', got {text!r}; {_allowed_text()}")
    parts = text.strip().split(None, 1)
    if len(parts) != 2:
        raise ValueError(f"key {text!r} must be 'ROOT SCALE', e.g. 'C major' or 'F# dorian'; {_allowed_text()}")
    root_text, scale_text = parts
    root_key = root_text.replace("♯", "#").replace("♭", "b").lower()
    if root_key not in _ROOTS_LOWER:
        raise ValueError(f"unknown root {root_text!r} in key {text!r}; {_allowed_text()}")
    scale = _normalise_scale(scale_text)
    scale = SCALE_ALIASES.get(scale, scale)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale_text!r} in key {text!r}; {_allowed_text()}")
    root_name = root_key[0].upper() + root_key[1:]
    return Key(root=_ROOTS_LOWER[root_key], scale=scale, root_name=root_name)


def token_mask(
    key: Key, low_pitch: int, high_pitch: int, allow_hold: bool = True, allow_off: bool = True
) -> np.ndarray:
    """Boolean mask, shape (130,), over melody tokens: which tokens the sampler may choose.

    True for ``HOLD`` / ``OFF`` when allowed, and for ``ON(p)`` where ``low_pitch <= p <= high_pitch`` (MIDI note
    numbers, inclusive) and ``p``'s pitch class is in ``key``. Raises ``ValueError`` unless
    ``0 <= low_pitch <= high_pitch <= 127``. Returns a new array owned by the caller.
    """
    for name, value in (("low_pitch", low_pitch), ("high_pitch", high_pitch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer MIDI pitch 0..127, got {value!r}")
    if not 0 <= low_pitch <= high_pitch <= NUM_PITCHES - 1:
        raise ValueError(f"pitch range must satisfy 0 <= low <= high <= 127, got low={low_pitch}, high={high_pitch}")
    mask = np.zeros(NUM_CLASSES, dtype=bool)
    mask[HOLD] = bool(allow_hold)
    mask[OFF] = bool(allow_off)
    pitches = np.arange(int(low_pitch), int(high_pitch) + 1)
    in_key = np.isin(pitches % 12, key.pitch_classes)
    mask[PITCH_OFFSET + pitches[in_key]] = True
    return mask
