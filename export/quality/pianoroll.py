"""Piano-roll PNGs of what the harness played: performer, partner, and the real music beside them (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from liveperf.music import melody  # noqa: E402

COLOURS = {"performer": "#1f77b4", "partner": "#d62728", "real": "#7f7f7f"}


def _draw(ax, tokens: np.ndarray, start: int, colour: str, label: str, alpha: float = 0.9, height: float = 0.8):
    for n in melody.tokens_to_notes(tokens, offset_step=start):
        ax.add_patch(plt.Rectangle((n.start_step, n.pitch - height / 2), n.end_step - n.start_step, height, color=colour,
                                   alpha=alpha, lw=0, label=label))
        label = None


def roll(ax, lines: list[tuple[str, np.ndarray, int, str]], steps_per_bar: int, title: str) -> None:
    """``lines``: (label, tokens, start step, colour key); bar lines every ``steps_per_bar``."""
    lo, hi, end = 127, 0, 0
    for label, tokens, start, colour in lines:
        alpha = 0.45 if colour == "real" else 0.9
        _draw(ax, tokens, start, COLOURS[colour], label, alpha, 0.5 if colour == "real" else 0.8)
        ps = [int(t) - melody.PITCH_OFFSET for t in tokens if t >= melody.PITCH_OFFSET]
        if ps:
            lo, hi = min(lo, min(ps)), max(hi, max(ps))
        end = max(end, start + len(tokens))
    first = min(s for _, _, s, _ in lines)
    for b in range((first // steps_per_bar) * steps_per_bar, end + 1, steps_per_bar):
        ax.axvline(b, color="black", lw=0.4, alpha=0.3)
    ax.set_xlim(first, end)
    ax.set_ylim(lo - 2, hi + 2)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("16th steps (bar lines)")
    ax.set_ylabel("MIDI pitch")
    ax.legend(fontsize=7, loc="upper right")


def save(panels: list[dict], out: Path, width: float = 13.0) -> Path:
    """``panels``: dicts with ``lines``, ``steps_per_bar``, ``title``; one row each."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 2.6 * len(panels)), squeeze=False)
    for ax, p in zip(axes[:, 0], panels):
        roll(ax, p["lines"], p["steps_per_bar"], p["title"])
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
