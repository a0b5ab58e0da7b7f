"""What the *first* load of MiniLM on torch leaves resident after its unload (issue 14, item 17).

It used to be ~95 MB: building the model on torch's ``meta`` device ran each module's parameter
initialisation, whose meta-tensor decompositions import ``torch._dynamo`` and sympy — about 70 MB
that Python never unloads. inferox-torch now skips that initialisation (the weights replace it
anyway). The rest of what stays is torch's and tokenizers' code pages touched by the first
forward pass (file-backed, shared, clean) and a few imported modules; ``docs/engine.md``
("Memory after the first unload") has the breakdown.

Each case runs in a fresh interpreter: the first load of a process is what is measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux" or not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")

#: Anonymous memory (heap and anonymous mappings: what an unload could give back) the first
#: load/unload may leave behind, against the same process with torch imported before the load.
LIMIT_MB = 20

SCRIPT = r"""
import json, sys
import torch  # the baseline is a process with the framework imported: imports are never undone
from inferox.engine import Engine, release_memory

def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out

release_memory()
before = status()
with Engine() as eng:
    eng.load(sys.argv[1], name="minilm", backend=sys.argv[2])
    emb = eng.infer("minilm", ["the cat sat on the mat", "memory after the first unload"])["sentence_embedding"]
    assert emb.shape == (2, 384)
    eng.unregister("minilm")
    release_memory()
    after = status()
print(json.dumps({"before": before, "after": after, "dynamo": "torch._dynamo" in sys.modules, "sympy": "sympy" in sys.modules}))
"""


def _first_cycle(package: Path, backend: str) -> dict[str, object]:
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(package), backend], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_first_minilm_unload_on_torch_gives_its_memory_back(minilm_package: Path, figures: object) -> None:
    out = _first_cycle(minilm_package, "torch")
    before, after = out["before"], out["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert out["dynamo"] is False and out["sympy"] is False  # the 70 MB import is not triggered
    anon_growth = after["RssAnon"] - before["RssAnon"]
    figures.record(  # type: ignore[attr-defined]
        rss_before_mb=round(before["VmRSS"], 1), rss_after_mb=round(after["VmRSS"], 1),
        anon_growth_mb=round(anon_growth, 1), file_growth_mb=round(after["RssFile"] - before["RssFile"], 1),
    )
    assert anon_growth < LIMIT_MB, out
