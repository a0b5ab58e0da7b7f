#!/usr/bin/env bash
# CI's run (scripts/test.sh, what .ci/run calls: every default nox session) on a loaded machine:
# while it runs, one CPU-bound busy process per usable core competes with it at the same priority
# (stress-ng when installed, else a Python busy loop). Records the wall time, whether it passed and
# the load it ran under; CI's budget is 40 minutes on a loaded 2-core machine.
#
#   tools/ci_load_test.sh                 # the whole CI run, under load (needs the machine to itself)
#   tools/ci_load_test.sh -s lint         # one session (a quick check that the script works)
#   LOAD_WORKERS=4 tools/ci_load_test.sh  # a heavier load
#   INFEROX_CI_SERIAL=1 tools/ci_load_test.sh  # the sessions one after another, for comparison
#
# Arguments go to scripts/test.sh (nox). Results: $OUT_DIR (default .nox/ci-load/) holds the run's
# log (ci-<time>.log) and a JSON summary (ci-<time>.json); the summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
workers=${LOAD_WORKERS:-$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')}
out_dir=${OUT_DIR:-$root/.nox/ci-load}
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log="$out_dir/ci-$stamp.log"
summary="$out_dir/ci-$stamp.json"

pids=()
stop_load() {
  # Only the processes this script started, by their ids.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_load EXIT INT TERM

if command -v stress-ng >/dev/null 2>&1; then
  load_tool="stress-ng --cpu $workers"
  stress-ng --cpu "$workers" --timeout 0 --quiet &
  pids+=($!)
else
  load_tool="python busy loop x $workers"
  for _ in $(seq "$workers"); do
    python3 -c 'while True: pass' &
    pids+=($!)
  done
fi

# Samples of the 1-minute load average, every 30 s, while CI runs.
( while true; do cut -d' ' -f1 /proc/loadavg; sleep 30; done ) > "$out_dir/ci-$stamp.loadavg" &
pids+=($!)

echo "ci_load_test: scripts/test.sh $* under $load_tool; log: $log"
start=$(date +%s)
set +e
bash scripts/test.sh "$@" > "$log" 2>&1
status=$?
set -e
wall=$(( $(date +%s) - start ))
stop_load

python3 - "$summary" "$wall" "$status" "$workers" "$load_tool" "$log" "$out_dir/ci-$stamp.loadavg" "$*" <<'EOF'
import json, os, platform, re, subprocess, sys
summary, wall, status, workers, tool, log, loadavg, args = sys.argv[1:]
samples = [float(x) for x in open(loadavg).read().split()]
text = open(log, errors="replace").read()
sessions = re.findall(r"nox > Session (\S+) (was successful|failed|was skipped)(?: in ([^\n]+?))?\.?\n", text)
result = {
    "command": f"scripts/test.sh {args}".strip(),
    # scripts/test.sh with no arguments runs `all` beside the other sessions; with arguments, or
    # INFEROX_CI_SERIAL=1, nox runs them one after another.
    "streams": "serial" if args or os.environ.get("INFEROX_CI_SERIAL") == "1" else "parallel",
    "wall_s": int(wall),
    "wall_min": round(int(wall) / 60, 1),
    "exit_status": int(status),
    "passed": int(status) == 0,
    "load": tool,
    "load_workers": int(workers),
    "cpus": len(os.sched_getaffinity(0)),
    "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()),
    "loadavg_1min_mean": round(sum(samples) / len(samples), 2) if samples else None,
    "loadavg_1min_max": max(samples, default=None),
    "sessions": [{"session": s, "outcome": o, "time": t} for s, o, t in sessions],
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "log": log,
}
json.dump(result, open(summary, "w"), indent=2)
print(json.dumps(result, indent=2))
print(f"ci_load_test: {result['command']} took {result['wall_min']} min under {tool} "
      f"(mean 1-min load {result['loadavg_1min_mean']}) and {'passed' if result['passed'] else 'FAILED'}; budget 40 min")
EOF
exit "$status"
