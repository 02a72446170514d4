#!/usr/bin/env bash
# Quick start, command 2: set up (JACK, liblo-tools, venv with dev+export extras) and run the whole test suite,
# including the integration tests through a real JACK server that the fixtures start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest -q "$@"
