#!/usr/bin/env bash
# The one command for developers and CI: set-up, lint, then every test.
# Tests that need Kafka and MongoDB (FerretDB) start the real servers themselves
# (tests/conftest.py -> fraudlake.services), fetching and building them on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/system-deps.sh
.venv/bin/ruff check .
.venv/bin/mypy  # config in pyproject.toml ([tool.mypy]: the packages, scripts, notebooks)
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "test.sh: pytest collected no tests" >&2; fi
exit "$rc"
