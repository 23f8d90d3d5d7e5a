"""The HTTP-vs-engine bench, in parts; `bench/bench_http_vs_engine.py` is its command line."""
