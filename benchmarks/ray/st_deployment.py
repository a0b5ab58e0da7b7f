"""What a Ray user writes instead of ``inferox serve --ray``: one Ray Serve deployment of
sentence-transformers with ``@serve.batch``, answering OpenAI-style embeddings requests.

The deployment (``Embedder``) is the part a user writes, kept as plain as the Ray Serve batching
guide makes it; ``main`` only runs it the way ``inferox serve --ray`` runs Inferox (a local cluster,
Ray Serve's proxy on 127.0.0.1:PORT, until SIGINT/SIGTERM), so that bench_ray_vs_st.py can start and
stop both alike::

    python benchmarks/ray/st_deployment.py MODEL_FOLDER --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from typing import Any

from ray import serve
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=64)
class Embedder:
    def __init__(self, model: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model, device="cpu")

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def embed(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, normalize_embeddings=True).tolist()

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = await asyncio.gather(*(self.embed(t) for t in texts))
        return {
            "object": "list",
            "model": body.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a sentence-transformers model folder")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # "local": a cluster of its own, never one another process on the machine started.
    ray.init(address="local", include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(Embedder.bind(args.model), name="st", route_prefix="/v1/embeddings", blocking=False)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    while not stop.wait(1.0):
        pass
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
