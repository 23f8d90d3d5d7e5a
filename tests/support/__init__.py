"""What every suite (and the benches) share: one server launcher, the real model and hostile model files,
OpenAI error-shape checks, and the fake cloud (a real HTTP server with fault injection).

`tests/` is on sys.path (pyproject's pytest `pythonpath`), so suites import `support.server`,
`support.models`, `support.checks` and `support.fake_cloud`; `bench/common.py` adds it for the benches.
"""
