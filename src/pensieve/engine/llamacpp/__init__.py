"""llama.cpp through llama-cpp-python's low-level C API: the ONLY package that imports `llama_cpp`.

- `runtime`: backend initialisation, llama.cpp's log forwarded to Python logging, load parameters, errors;
- `vocab`: a model's vocabulary (tokenize, token bytes, special tokens), loadable without the weights;
- `batch_context`: a loaded model with a multi-sequence context: one `llama_decode` per step for many
  sequences, per-sequence sampler chains, KV-cache sequence operations, log-probabilities, embeddings.
"""

from pensieve.engine.llamacpp.runtime import LlamaConfig, LlamaDecodeError, LlamaLoadError

__all__ = ["LlamaConfig", "LlamaDecodeError", "LlamaLoadError"]
