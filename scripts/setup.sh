#!/usr/bin/env bash
# Set up a fresh Debian / Python 3.11 machine for liveperf: system packages (when root), a virtual environment,
# and the package with the extras asked for. Idempotent; called by scripts/demo.sh and scripts/test.sh.
#   usage: scripts/setup.sh [runtime|test]
set -euo pipefail
cd "$(dirname "$0")/.."
want="${1:-runtime}"

if [ "$want" = "test" ]; then
  # Real MIDI transport and OSC peers for the integration tests: JACK (dummy driver) and liblo's tools.
  need=()
  command -v jackd >/dev/null || need+=(jackd2)
  command -v jack_lsp >/dev/null || need+=(jackd2)
  command -v oscsend >/dev/null || need+=(liblo-tools)
  command -v jack_midi_clock >/dev/null || need+=(jack-midi-clock)
  # Link tests run inside a private network namespace with only loopback: unshare (util-linux) and ip (iproute2).
  command -v unshare >/dev/null || need+=(util-linux)
  command -v ip >/dev/null || need+=(iproute2)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
      sudo apt-get update -qq
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
  fi
fi

py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip >/dev/null
if [ "$want" = "test" ]; then
  # The export extra brings torch (CPU build 2.13.0) for the ONNX-vs-torch parity tests.
  pip install -q -e ".[dev,export,docs,link]"
else
  pip install -q -e .
fi
