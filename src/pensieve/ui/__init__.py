"""Pensieve's Streamlit UI: a plain HTTP client of the server (chat, models, settings, monitoring, files).

Nothing here imports the engine, the burst controller or the cloud clients: every figure the UI shows
comes from the server's HTTP API, so the UI works the same against a server on another machine.
Start it with `pensieve ui` (alone) or `pensieve up` (server and UI together).
"""
