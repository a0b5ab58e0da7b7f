# syntax=docker/dockerfile:1
# Inferox on CPU: `inferox serve` on the ONNX Runtime backend, from the wheels this repository builds.
#
#   nox -s dist                                   # builds every distribution's wheel into dist/
#   docker build -t inferox .                     # or: podman build -t inferox .
#   docker run --rm -p 8000:8000 -v "$PWD/models:/models:ro" inferox
#
# The container serves the model repository (or the single package) mounted at /models on port
# 8000 (KServe V2 and OpenAI embeddings; gRPC with `--grpc-port 8001` appended to the run command).
# Every install goes through constraints.txt, as everywhere in this project. Other backends:
# `--build-arg BACKENDS="inferox-onnx inferox-torch"` (add PyTorch's CPU index for torch, e.g.
# `--build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`, or pip fetches CUDA builds).
# tests/repo/test_install.py runs this file's install steps in a scratch environment and starts the
# entry point; `nox -s image` builds and runs it for real (buildah: tools/check_image.py).
# The base: CPython 3.11 on Debian, slim. BASE_IMAGE exists for mirrors and air-gapped builders.
ARG BASE_IMAGE=python:3.11-slim
FROM $BASE_IMAGE

# The distributions installed from dist/ (a name with its extras; the wheel file comes from dist/).
ARG BACKENDS="inferox-onnx"
ARG DISTRIBUTIONS="inferox-core[text] inferox-mlpkg inferox-engine[serve,grpc]"
# pip's own settings, for a mirror or a proxy's certificate; declared without a value: set only
# when given (pip reads them from the environment).
ARG PIP_EXTRA_INDEX_URL
ARG PIP_INDEX_URL
ARG PIP_CERT
# Where the build context's files wait while they are installed (deleted afterwards).
ARG BUILD_DIR=/tmp/inferox-build

ENV VIRTUAL_ENV=/opt/inferox
ENV PATH="$VIRTUAL_ENV/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INFEROX_SERVER_HOST=0.0.0.0 \
    INFEROX_SERVER_PORT=8000

# A user of its own: the server never runs as root.
RUN useradd --create-home --uid 10001 --user-group inferox

COPY constraints.txt $BUILD_DIR/
COPY dist/ $BUILD_DIR/dist/

# Each distribution from its own wheel file in dist/ (never a same-named project from an index),
# its dependencies from the index, all through constraints.txt.
# pip's cache is a build-time mount: builds reuse downloads, and the image does not carry them.
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    wheels=""; \
    for requirement in $DISTRIBUTIONS $BACKENDS; do \
        name="${requirement%%\[*}"; \
        extras="${requirement#"$name"}"; \
        wheel="$(ls "$BUILD_DIR"/dist/"$(echo "$name" | tr - _)"-*.whl)"; \
        wheels="$wheels $wheel$extras"; \
    done; \
    set -f; \
    python -m venv "$VIRTUAL_ENV"; \
    "$VIRTUAL_ENV/bin/pip" install -c "$BUILD_DIR/constraints.txt" $wheels; \
    "$VIRTUAL_ENV/bin/inferox" backends --no-devices; \
    rm -rf "$BUILD_DIR"

USER inferox
WORKDIR /home/inferox
EXPOSE 8000 8001

# Ready = every model loaded and warmed up (docs/serving.md); the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:' + os.environ['INFEROX_SERVER_PORT'] + '/v2/health/ready'; sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

# `docker stop` sends SIGINT, Ctrl-C's signal, which `inferox serve` answers by finishing in-flight
# requests and exiting 0; as PID 1 a process gets only the signals it handles, and Python always
# handles SIGINT.
STOPSIGNAL SIGINT
ENTRYPOINT ["inferox", "serve"]
CMD ["/models"]
