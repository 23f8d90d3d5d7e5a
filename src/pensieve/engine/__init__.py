"""Local inference: the Engine protocol, model registry and pool, worker processes and the batching scheduler."""
