#!/usr/bin/env bash
# Set up and run the whole test matrix (the README's second command; .ci/run calls this).
# Installs nox into a private bootstrap environment, then runs the default nox sessions, each of
# which creates its own environment through constraints.txt. Extra arguments go to nox
# (e.g. `scripts/test.sh -s torch`), which then runs exactly what they say.
#
# With no arguments, two streams run side by side: the `all` session (the shared tests, on two
# pytest workers) in the foreground, and lint, core, torch, jax, onnx and thirdparty one after
# another in the background (their output follows when they end); then `coverage` combines both.
# Alone, each stream leaves a CPU idle much of the time (pip installs, mypy and most single-process
# test sessions use one core), and on a machine shared with other work an idle turn is lost to it:
# side by side they fill it (tools/ci_load_test.sh measures the run under load; its result:
# benchmarks/results/ci_load.json). INFEROX_CI_SERIAL=1 runs the sessions one after another.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
export PIP_CONSTRAINT="$PWD/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .nox/_bootstrap/bin/nox ]; then
  "$PY" -m venv .nox/_bootstrap
  .nox/_bootstrap/bin/pip install -q "nox>=2024.4"
fi
NOX=.nox/_bootstrap/bin/nox
if [ $# -gt 0 ] || [ "${INFEROX_CI_SERIAL:-0}" = 1 ]; then
  exec "$NOX" "$@"
fi

mkdir -p .nox/_logs
background_log=.nox/_logs/backends.log
# The per-distribution sessions write their own coverage files (.nox/_coverage/.coverage.<session>),
# so the two streams never write the same file.
# Its own process group (setsid), so that an interrupted run stops it and the tests it started.
setsid "$NOX" -s lint core torch jax onnx thirdparty > "$background_log" 2>&1 &
background=$!
trap 'kill -- "-$background" 2>/dev/null || true; exit 130' INT TERM

status=0
"$NOX" -s all || status=$?
background_status=0
wait "$background" || background_status=$?
trap - INT TERM
echo "=== lint, core, torch, jax, onnx, thirdparty (run beside 'all'; exit status $background_status) ==="
cat "$background_log"
"$NOX" -s coverage || status=$?
if [ "$status" -ne 0 ] || [ "$background_status" -ne 0 ]; then
  echo "scripts/test.sh: failed (all + coverage: $status; lint..thirdparty: $background_status)" >&2
  exit 1
fi
