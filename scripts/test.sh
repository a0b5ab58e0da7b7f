#!/usr/bin/env bash
# Set up and run the whole test matrix (the README's second command; .ci/run calls this).
# Installs nox into a private bootstrap environment, then runs the default nox sessions, each of
# which creates its own environment through constraints.txt. Extra arguments go to nox
# (e.g. `scripts/test.sh -s torch`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
export PIP_CONSTRAINT="$PWD/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .nox/_bootstrap/bin/nox ]; then
  "$PY" -m venv .nox/_bootstrap
  .nox/_bootstrap/bin/pip install -q "nox>=2024.4"
fi
exec .nox/_bootstrap/bin/nox "$@"
