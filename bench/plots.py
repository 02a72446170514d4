"""PNG plots of a bench run (matplotlib, the `bench` extra). How to read them: README, "Benchmarks"."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _cdf(ax, samples_us: dict[str, np.ndarray], title: str) -> None:
    for label, a in samples_us.items():
        x = np.sort(np.asarray(a, dtype=np.float64))
        ax.plot(x, np.arange(1, x.size + 1) / x.size, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("µs (log)")
    ax.set_ylabel("fraction of calls ≤ x")
    ax.axhline(0.99, color="grey", lw=0.5, ls="--")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def latency_cdfs(model_samples_ns: dict, sampler_samples_ns: dict, out: Path) -> Path:
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    _cdf(a, {k: v / 1e3 for k, v in model_samples_ns.items()}, "model call latency (CDF; dashed = p99)")
    _cdf(b, {k: np.asarray(v) / 1e3 for k, v in sampler_samples_ns.items()}, "sampler per token (CDF)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def timing(result: dict, out: Path) -> Path:
    s = result["samples"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    send = np.asarray(s["send_ns"]) / 1e3
    arr = np.asarray([e for _, e in s["arrival"]]) / 1e3
    axes[0].hist([send, arr], bins=60, label=["send − due", "arrival at JACK client − due"], log=True)
    axes[0].set_xlabel("µs")
    axes[0].set_title(f"grid timing error at {result['tempo_bpm']} BPM ({result['scheduling']})", fontsize=9)
    axes[0].legend(fontsize=8)
    if s["arrival"]:
        t = np.asarray([x for x, _ in s["arrival"]]) / 1e9
        axes[1].plot(t, arr, ".", ms=2)
    axes[1].set_xlabel("s into the run")
    axes[1].set_ylabel("arrival − due (µs)")
    axes[1].set_title("timing error over time")
    if s["rss"]:
        axes[2].plot([x for x, _ in s["rss"]], [k / 1024 for _, k in s["rss"]])
    axes[2].set_xlabel("s")
    axes[2].set_ylabel("MiB")
    axes[2].set_title("liveperf resident memory")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def reaction_cdf(result: dict, out: Path) -> Path:
    """CDF of reaction latency per path (harmonize through liveperf, bare JACK loopback, bare echo client)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = {"liveperf": "harmonize reaction (liveperf)", "loopback": "bare JACK loopback (baseline)",
             "echo": "bare echo client (0.5 ms poll)"}
    for path, ns in result["samples"].items():
        if len(ns):
            x = np.sort(np.asarray(ns, dtype=np.float64)) / 1e3
            s = result[path]
            ax.plot(x, np.arange(1, x.size + 1) / x.size,
                    label=f"{names.get(path, path)}: p50 {s['p50_us']:.0f} µs, p99 {s['p99_us']:.0f} µs")
    ax.axhline(0.99, color="grey", lw=0.5, ls="--")
    ax.set_xscale("log")  # the body is 0.2-6 ms; a machine stall puts a lone point at tens of ms
    period_us = result["jack_period_us"]
    for k in (1, 2):
        ax.axvline(k * period_us, color="grey", lw=0.5, ls=":")
    ax.set_xlabel(f"µs (log) from the performer's send to arrival at the listener (dotted: 1 and 2 JACK periods)")
    ax.set_ylabel("fraction of notes ≤ x")
    ax.set_title(f"reaction latency through JACK (period {result['jack_period_frames']} frames, "
                 f"{result['minutes']:g} min{', one core busy' if result['busy_core'] else ''})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def mode_timing(per_mode: dict, out: Path) -> Path:
    """CDF of arrival − due per mode (grid timing through JACK), one curve per mode."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for mode, r in per_mode.items():
        arr = np.sort(np.asarray([e for _, e in r["samples"]["arrival"]], dtype=np.float64)) / 1e3
        if arr.size:
            s = r["arrival_minus_due"]
            ax.plot(arr, np.arange(1, arr.size + 1) / arr.size,
                    label=f"{mode}: p50 {s['p50_us']:.0f} µs, p99 {s['p99_us']:.0f} µs (n={s['n']})")
    ax.axhline(0.99, color="grey", lw=0.5, ls="--")
    ax.set_xlabel("arrival at a JACK client − due grid time (µs)")
    ax.set_ylabel("fraction of notes ≤ x")
    ax.set_title("grid timing per mode (harmonize answers off the grid: see reaction_cdf.png)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
