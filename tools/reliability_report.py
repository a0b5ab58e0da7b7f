"""Generate ``docs/reliability.md`` from the JSON the reliability runs wrote (never typed by hand).

Inputs (each optional; a missing one is reported as "not run"), all under ``benchmarks/results/``:

* ``soak_engine.json`` — ``benchmarks/soak/soak_engine.py`` (in-process requests on an MLP),
* ``soak_server.json`` — ``benchmarks/soak/soak_server.py`` (HTTP soak on MiniLM),
* ``reliability_tests.json`` — figures and outcomes of ``tests/reliability`` (written by its
  conftest when ``INFEROX_RELIABILITY_OUT`` is set; one entry per pytest run, e.g. the default
  profile and the long ``fuzz`` profile),
* ``flaky.json`` — the ``flaky`` session's repeated full-suite runs (see :func:`flaky_from_junit`),
* ``coverage.json`` — per-distribution coverage percentages against their bars.

Usage::

    python tools/reliability_report.py                      # write docs/reliability.md
    python tools/reliability_report.py --check              # fail if the doc is stale
    python tools/reliability_report.py flaky-junit OUT.json RUN1.xml RUN2.xml ...   # summarise junit files
    python tools/reliability_report.py coverage OUT.json .coverage --how "..."     # per-distribution totals
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "reliability.md"

SECTIONS = {
    "test_engine_faults.py": "Fault injection: engine",
    "test_reload_memory.py": "Fault injection: unload / reload memory",
    "test_hub_faults.py": "Fault injection: Hub server and disk",
    "test_hostile_packages.py": "Hostile input: packages",
    "test_hostile_http.py": "Hostile input: HTTP requests",
    "test_hostile_package_files.py": "Hostile input: package files (FIFOs, symlink loops, unlisted files, lying golden files)",
    "test_package_cache_integrity.py": "Integrity: the package cache keyed by content",
    "test_engine_bad_requests.py": "Hostile input: engine requests (empty batches, backend names, deadlines, session caps)",
    "test_first_unload_memory.py": "Memory after the first unload",
    "test_slow_senders.py": "Hostile input: slow senders",
    "test_strict_requests.py": "Hostile input: strict request parsing",
    "test_nonfinite_outputs.py": "NaN and Infinity in JSON outputs",
    "test_metrics_cardinality.py": "Hostile input: metrics cardinality and slow scrapes",
    "test_stuck_load_shutdown.py": "Fault injection: a signal while a load hangs",
    "test_hostile_repository.py": "Hostile input: model repository and request metadata",
    "test_cli_hostile_text.py": "Hostile input: text printed by the CLI",
    "test_source_spellings.py": "Sources: hf:// revisions, pickle refusal, convert's file mode",
}


def _load(path: Path) -> Any:
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _yes(ok: Any) -> str:
    return "yes" if ok else "**no**"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "none"
    return str(value)


def soak_engine_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Stress: in-process requests (`benchmarks/soak/soak_engine.py`)", ""]
    if data is None:
        return [*lines, "Not run (no `benchmarks/results/soak_engine.json`).", ""]
    scale = data["scale"]
    specified = scale.get("specified", scale["requested"])
    ran = f"{scale['run']:,} of {scale['requested']:,} requested (issue 7 specifies {specified:,})"
    if scale.get("stopped_early"):
        ran += f" (**reduced scale**: stopped at the {scale['max_seconds']:.0f} s bound)"
    elif scale["run"] < specified:
        ran += " (**reduced scale**)"
    lines += [
        f"Model: {data['model']}; {scale['threads']} client threads; finished {data['finished']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests run (scale actually run) | {ran} |",
        f"| answered | {data['requests_answered']:,} |",
        f"| lost (sent, never answered) | {data['lost']:,} |",
        f"| mismatched answers | {data['mismatched']:,} |",
        f"| errors | {_fmt(data['errors'])} |",
        f"| throughput | {data['throughput_rps']:,.0f} requests/s over {data['elapsed_s']:,.0f} s |",
        f"| RSS after warm-up → end (max) | {data['rss_after_warmup_mb']} MB → {data['rss_end_mb']} MB ({data['rss_max_mb']} MB) |",
        f"| RSS growth after warm-up | {data['rss_growth_pct']} % (limit {data['rss_growth_limit_pct']} %) |",
        f"| passed | {_yes(data['passed'])} |",
        "",
    ]
    return lines


def soak_server_section(data: dict[str, Any] | None, source: str = "soak_server.json") -> list[str]:
    lines = [f"## Soak: HTTP server (`benchmarks/soak/soak_server.py` → `{source}`)", ""]
    if data is None:
        return [*lines, "Not run (no `benchmarks/results/soak_server.json`).", ""]
    scale = data["scale"]
    env = {k: v for k, v in (data.get("server_env") or {}).items() if v is not None}
    ran = f"{scale['run_duration_s']:,.0f} s of the {scale['requested_duration_s']:,.0f} s specified"
    if scale.get("stopped_early"):
        ran += " (**reduced scale**)"
    lines += [
        f"Model: {data['model']}; {scale['clients']} concurrent clients; server environment: {_fmt(env) if env else 'default'}; "
        f"client keep-alive expiry: {_keepalive(data)}, server's: {data.get('server_keep_alive_s', 5)} s; finished {data['finished']}.",
        "",
    ]
    if (data.get("server_env") or {}).get("INFEROX_MMAP_THRESHOLD") == 0:
        lines += [
            "A comparison run, not how `inferox serve` runs: the server's fixed mmap threshold was turned off "
            "(`soak_server.py --mmap-threshold 0`), to show what `limit_heap_fragmentation` changes.",
            "",
        ]
    lines += [
        "| figure | value |",
        "|---|---|",
        f"| duration (scale actually run) | {ran} |",
        f"| requests sent / answered | {data['sent']:,} / {data['answered']:,} |",
        f"| lost (sent, never answered) | {data['lost']:,} |",
        f"| mismatched answers | {data['mismatched']:,} |",
        f"| errors | {_fmt(data['errors'])} |",
        f"| throughput, latency p50 / p99 | {data['throughput_rps']:,.1f} requests/s, {data['latency_ms']['p50']} / {data['latency_ms']['p99']} ms |",
        f"| server RSS after warm-up → end (max) | {data['server_rss_after_warmup_mb']} MB → {data['server_rss_end_mb']} MB ({data['server_rss_max_mb']} MB) |",
        f"| server heap (glibc mmap threshold) | {_heap(data)} |",
        f"| server RSS growth after warm-up | {data['server_rss_growth_pct']} % (limit {data.get('server_rss_growth_limit_pct', 5.0)} %) |",
        f"| server RSS over time (s: MB) | {_curve(data.get('server_rss_samples_mb') or [])} |",
        f"| server RSS growth over the second half of the run | {_second_half_growth(data.get('server_rss_samples_mb') or [])} |",
        f"| server alive and ready afterwards | {_yes(data['server_alive_after'])} |",
        f"| server log problems | {len(data.get('server_log_problems') or []) if 'server_log_problems' in data else 'not recorded'} |",
        f"| passed (nothing lost, mismatched or failed; RSS growth under the limit) | {_yes(data['passed'] and data['server_rss_growth_pct'] < data.get('server_rss_growth_limit_pct', 5.0))} |",
        "",
    ]
    return lines


def _heap(data: dict[str, Any]) -> str:
    env = data.get("server_env") or {}
    if "INFEROX_MMAP_THRESHOLD" not in env:
        return "adaptive (glibc default; the server did not fix it yet)"
    value = env["INFEROX_MMAP_THRESHOLD"]
    if value is None:
        return "fixed by the server at its default, 256 KiB (`limit_heap_fragmentation`)"
    return "adaptive (glibc default: `INFEROX_MMAP_THRESHOLD=0`)" if value == 0 else f"fixed at {value:,} bytes (`INFEROX_MMAP_THRESHOLD`)"


def _keepalive(data: dict[str, Any]) -> str:
    if "client_keepalive_expiry_s" in data:
        return f"{data['client_keepalive_expiry_s']} s"
    # Runs from before the field was recorded: the script version that added ``server_env`` used
    # 2 s; the one before it httpx's default, 5 s.
    return "2.0 s" if "server_env" in data else "5 s (httpx default)"


def _second_half_growth(samples: list[Any]) -> str:
    """RSS growth from the sample nearest mid-run to the last one (shows whether growth flattens)."""
    if len(samples) < 4:
        return "n/a"
    end_t = samples[-1][0]
    mid = min(samples, key=lambda s: abs(s[0] - end_t / 2))
    return f"{100 * (samples[-1][1] - mid[1]) / mid[1]:.2f} % ({mid[1]:.0f} MB at {mid[0]:.0f} s → {samples[-1][1]:.0f} MB)"


def _curve(samples: list[Any], points: int = 8) -> str:
    if not samples:
        return "n/a"
    step = max(1, len(samples) // points)
    picked = samples[::step]
    if picked[-1] != samples[-1]:
        picked.append(samples[-1])
    return ", ".join(f"{t:.0f}: {mb:.0f}" for t, mb in picked)


def tests_sections(data: dict[str, Any] | None) -> list[str]:
    if data is None:
        return ["## Fault injection and hostile input", "", "Not run (no `benchmarks/results/reliability_tests.json`).", ""]
    lines: list[str] = []
    runs = data.get("runs", [])
    lines += ["## Test runs", "", "| # | run | hypothesis profile | finished | tests | passed | failed | skipped |", "|---|---|---|---|---|---|---|---|"]
    for i, run in enumerate(runs, 1):
        outcomes = [t.get("outcome") for t in run["tests"].values()]
        lines.append(
            f"| {i} | {run.get('run', run['profile'])} | {run['profile']} | {run['finished']} | {len(outcomes)} | {outcomes.count('passed')} | {outcomes.count('failed')} | {outcomes.count('skipped')} |"
        )
    lines.append("")
    for file, title in SECTIONS.items():
        lines += [f"## {title} (`tests/reliability/{file}`)", "", "| test | run | outcome | figures |", "|---|---|---|---|"]
        found = False
        for run in runs:
            for node, figs in sorted(run["tests"].items()):
                if f"/{file}::" not in node:
                    continue
                found = True
                shown = {k: v for k, v in figs.items() if k not in ("outcome",)}
                lines.append(f"| `{node.split('::', 1)[1]}` | {run.get('run', run['profile'])} | {figs.get('outcome', '?')} | {_fmt(shown) if shown else ''} |")
        if not found:
            lines.append("| (not run) | | | |")
        lines.append("")
    totals: dict[str, int] = {}
    for run in runs:
        for figs in run["tests"].values():
            for key in ("inputs_tried", "typed_errors", "accepted", "faults_injected", "requests", "cycles"):
                if isinstance(figs.get(key), int):
                    label = f"{run.get('run', run['profile'])}: {key}"
                    totals[label] = totals.get(label, 0) + figs[key]
    if totals:
        lines += ["## Totals", "", "| run: figure | total |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in sorted(totals.items())]
        lines.append("")
    return lines


def flaky_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Flakiness: the full suite several times in a row (`nox -s flaky`)", ""]
    if data is None:
        return [*lines, "Not run (no `benchmarks/results/flaky.json`).", ""]
    if data.get("how"):
        lines += [f"Run as: {data['how']}.", ""]
    lines += ["| run | tests | failures | errors | skipped | time |", "|---|---|---|---|---|---|"]
    for i, run in enumerate(data["runs"], 1):
        lines.append(f"| {i} | {run['tests']:,} | {run['failures']} | {run['errors']} | {run['skipped']} | {run['time_s']:,.0f} s |")
    ok = all(r["failures"] == 0 and r["errors"] == 0 for r in data["runs"])
    lines += ["", f"Every run passed: {_yes(ok)}."]
    failed = sorted({t for r in data["runs"] for t in r.get("failed", [])})
    if failed:
        lines += ["", "Tests that failed in at least one run (in how many):", ""]
        lines += [f"- `{t}` ({sum(t in r.get('failed', []) for r in data['runs'])} of {len(data['runs'])})" for t in failed]
    if data["runs"] and data["runs"][0].get("started"):
        lines += ["", f"First run started {data['runs'][0]['started']}."]
    lines.append("")
    return lines


def coverage_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Coverage against the bars", ""]
    if data is None:
        return [*lines, "Not measured (no `benchmarks/results/coverage.json`).", ""]
    lines += [f"Measured {data.get('measured', '?')} ({data.get('how', '')}).", "", "| distribution | coverage | bar | holds |", "|---|---|---|---|"]
    for dist, entry in data["distributions"].items():
        lines.append(f"| {dist} | {entry['percent']:.1f} % | {entry['bar']} % | {_yes(entry['percent'] >= entry['bar'])} |")
    lines.append("")
    return lines


def render(results: Path = RESULTS) -> str:
    engine = _load(results / "soak_engine.json")
    servers = {p.name: _load(p) for p in sorted(results.glob("soak_server*.json"))}
    tests = _load(results / "reliability_tests.json")
    flaky = _load(results / "flaky.json")
    cov = _load(results / "coverage.json")
    scale = []
    if engine:
        scale.append(f"in-process soak {engine['scale']['run']:,} requests (specified {engine['scale'].get('specified', engine['scale']['requested']):,})")
    for name, data in servers.items():
        scale.append(f"HTTP soak ({name}) {data['scale']['run_duration_s']:,.0f} s (specified {data['scale']['requested_duration_s']:,.0f} s)")
    lines = [
        "# Reliability report",
        "",
        "<!-- Generated by tools/reliability_report.py from benchmarks/results/*.json. Do not edit by hand: run `nox -s reliability`. -->",
        "",
        "What Inferox was put through — load, faults and hostile input — and the figures each run produced.",
        "The soak runs are scripts under `benchmarks/soak/`; the fault-injection and hostile-input tests live",
        "in `tests/reliability/` (a short hypothesis profile in the default test run, a long one in `nox -s fuzz`).",
        "",
        "**Scale actually run:** " + ("; ".join(scale) if scale else "no soak run recorded") + ".",
        "",
    ]
    lines += soak_engine_section(engine)
    if not servers:
        lines += soak_server_section(None)
    for name, data in servers.items():
        lines += soak_server_section(data, name)
    lines += tests_sections(tests)
    lines += flaky_section(flaky)
    lines += coverage_section(cov)
    return "\n".join(lines).rstrip() + "\n"


def flaky_from_junit(out: Path, files: list[Path], how: str = "") -> dict[str, Any]:
    """Summarise pytest ``--junitxml`` files (one per run) into ``flaky.json``; ``how`` says how
    the suite was run (shown in the doc)."""
    runs = []
    for f in files:
        root = ET.parse(f).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        assert suite is not None, f"{f}: no testsuite"
        failed = sorted(
            f"{case.get('classname', '')}::{case.get('name', '')}"
            for case in suite.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None
        )
        runs.append(
            {
                "file": f.name,
                "tests": int(suite.get("tests", 0)),
                "failures": int(suite.get("failures", 0)),
                "errors": int(suite.get("errors", 0)),
                "skipped": int(suite.get("skipped", 0)),
                "time_s": float(suite.get("time", 0.0)),
                "started": suite.get("timestamp", ""),
                "failed": failed,
            }
        )
    data = {"how": how, "runs": runs}
    out.write_text(json.dumps(data, indent=2) + "\n")
    return data


#: Each distribution's source pattern and coverage bar (issue 7).
COVERAGE_BARS = {
    "inferox-core": ("inferox-core/src/*", 95),
    "inferox-engine": ("inferox-engine/src/*", 90),
    "inferox-mlpkg": ("inferox-mlpkg/src/*", 90),
    "inferox-torch": ("inferox-torch/src/*", 85),
    "inferox-jax": ("inferox-jax/src/*", 85),
}


def coverage_from_data(out: Path, data_file: Path, how: str) -> dict[str, Any]:
    """Per-distribution totals of a coverage data file against :data:`COVERAGE_BARS`, as ``coverage.json``."""
    import io
    import time

    import coverage

    cov = coverage.Coverage(data_file=str(data_file), config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    dists = {}
    for dist, (pattern, bar) in COVERAGE_BARS.items():
        pct = cov.report(include=[str(ROOT / pattern)], file=io.StringIO())
        dists[dist] = {"percent": round(float(pct), 2), "bar": bar}
    data = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "how": how, "distributions": dists}
    out.write_text(json.dumps(data, indent=2) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate docs/reliability.md from the reliability runs' JSON.")
    ap.add_argument("command", nargs="?", default="render", choices=["render", "flaky-junit", "coverage"])
    ap.add_argument("args", nargs="*", type=Path)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out", type=Path, default=DOC)
    ap.add_argument("--how", default="", help="coverage, flaky-junit: how the data was measured or the suite run (shown in the doc)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the doc differs from what the JSON gives")
    ns = ap.parse_args(argv)
    if ns.command == "flaky-junit":
        if len(ns.args) < 2:
            ap.error("flaky-junit OUT.json RUN.xml [RUN.xml ...]")
        data = flaky_from_junit(ns.args[0], ns.args[1:], ns.how)
        bad = [r for r in data["runs"] if r["failures"] or r["errors"]]
        print(f"{len(data['runs'])} runs, {len(bad)} with failures")
        return 1 if bad else 0
    if ns.command == "coverage":
        if len(ns.args) != 2:
            ap.error("coverage OUT.json COVERAGE_DATA_FILE")
        cdata = coverage_from_data(ns.args[0], ns.args[1], ns.how)
        for dist, e in cdata["distributions"].items():
            print(f"{dist}: {e['percent']:.1f} % (bar {e['bar']} %)")
        return 0
    text = render(ns.results)
    if ns.check:
        current = ns.out.read_text(encoding="utf-8") if ns.out.exists() else ""
        if current != text:
            print(f"{ns.out} is stale: run python tools/reliability_report.py", file=sys.stderr)
            return 1
        return 0
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(text, encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("**Scale actually run:**"):
            print(line)
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
