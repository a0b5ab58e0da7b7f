"""gRPC memory stays bounded under a flood of refused large messages (issue 22, item 4).

A few rounds of concurrent 40 MB ``ModelInfer`` messages the server refuses — too many rows (refused
from the message's header, before its tensors are copied) and tensors the model does not take
(refused after decoding) — used to leave the serving process gigabytes bigger: freed message
buffers stayed in glibc's heaps, and refused messages were kept alive by their errors' frames.
The real ``inferox serve`` in a subprocess (its own malloc settings, as in production), the real
gRPC client; RSS read from ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.net import free_port, wait_until

grpc = pytest.importorskip("grpc")
theirs = pytest.importorskip("tritonclient.grpc.service_pb2")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS from /proc")

MESSAGE_MB = 40
CONCURRENT = 8
#: What the server may keep after the flood, over its size before it (the messages were 8 x 40 MB a round).
ALLOWED_GROWTH_MB = 200


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def _message(rows: int, cols: int) -> bytes:
    req = theirs.ModelInferRequest(model_name="mlp")
    req.inputs.add(name="input", datatype="FP32", shape=[rows, cols])
    req.raw_input_contents.append(np.ones((rows, cols), np.float32).tobytes())
    return req.SerializeToString()


def test_refused_large_messages_do_not_stay_in_memory(mlp_package: Path) -> None:
    port, gport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("INFEROX_MMAP_THRESHOLD", "MALLOC_MMAP_THRESHOLD_") and not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferox.engine.cli", "serve", str(mlp_package), "--name", "mlp", "--port", str(port), "--grpc-port", str(gport), "--backend", "torch"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    n = MESSAGE_MB * 2**20 // 4
    floods = {
        "too many rows": _message(n // 4, 4),  # refused from the header (max_request_rows)
        "not the model's shape": _message(1000, n // 1000),  # refused after decoding
    }
    try:
        def ready() -> bool:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_until(ready, timeout=120, interval=0.2)
        channel = grpc.insecure_channel(f"127.0.0.1:{gport}", options=[("grpc.max_send_message_length", 2**30)])
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer", request_serializer=None, response_deserializer=None)
        codes: list[str] = []

        def send(data: bytes) -> None:
            try:
                call(data, timeout=120)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)

        before = _rss_mb(proc.pid)
        for data in floods.values():
            threads = [threading.Thread(target=send, args=(data,)) for _ in range(CONCURRENT)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        channel.close()
        assert set(codes) == {"RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"}, codes
        settled = wait_until(lambda: _rss_mb(proc.pid) <= before + ALLOWED_GROWTH_MB, timeout=10, interval=0.25)
        after = _rss_mb(proc.pid)
        assert settled, f"RSS {before} MB before {2 * CONCURRENT} refused {MESSAGE_MB} MB messages, {after} MB after"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
