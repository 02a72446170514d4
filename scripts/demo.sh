#!/usr/bin/env bash
# Quick start, command 1: set up and play the demo set. With a MIDI system (JACK/ALSA/CoreMIDI) liveperf opens
# virtual ports; without one it plays the shipped performer takes in real time and records both parts.
# Extra arguments go to `liveperf play` (e.g. --backend file, --input take.mid, --record out.mid).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh runtime
exec .venv/bin/liveperf play setlists/demo.toml "$@"
