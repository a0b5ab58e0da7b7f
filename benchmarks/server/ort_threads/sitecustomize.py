"""Loaded by bench_vs_infinity.py into infinity-emb's optimum server (PYTHONPATH) for the
1-intra-op-thread configuration only: infinity 0.0.78 creates its ONNX Runtime session with no
SessionOptions, so ORT sizes its intra-op pool to the machine and ``OMP_NUM_THREADS`` does not reach
it. With ``BENCH_ORT_INTRA_OP_THREADS=N`` every session gets N intra-op threads and one inter-op
thread, as ``inferox serve --threads N`` gives Inferox's sessions; nothing else changes."""

import os

_threads = os.environ.get("BENCH_ORT_INTRA_OP_THREADS")
if _threads:
    import onnxruntime

    _init = onnxruntime.InferenceSession.__init__

    def _init_with_threads(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, **kwargs):  # type: ignore[no-untyped-def]
        options = sess_options if sess_options is not None else onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(_threads)
        options.inter_op_num_threads = 1
        _init(self, path_or_bytes, options, providers, provider_options, **kwargs)

    onnxruntime.InferenceSession.__init__ = _init_with_threads
