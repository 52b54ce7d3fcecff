#!/usr/bin/env bash
# The main job on embedded defaults (no Docker, no services): set-up, then the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m streaming.demo "$@"
