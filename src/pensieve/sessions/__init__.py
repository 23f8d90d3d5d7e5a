"""Conversations kept by the server: records, the SQLite store, history trimming and export.

`SessionStore` (store.py) keeps sessions and their messages in the shared `Database`; `fit_history`
(history.py) decides which stored turns go into the next prompt; export.py renders a session as
Markdown or JSON. The HTTP routes are in `pensieve.api.sessions`.
"""

from __future__ import annotations

from pensieve.sessions.records import Session, SessionNotFoundError, SessionPage, StoredMessage
from pensieve.sessions.store import UNSET, SessionStore

__all__ = ["UNSET", "Session", "SessionNotFoundError", "SessionPage", "SessionStore", "StoredMessage"]
