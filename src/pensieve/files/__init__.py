"""Uploaded files: type detection from the bytes, text extraction, storage, and retrieval of passages.

`FileStore` (store.py) is the one entry point the server uses; the chat path calls
`FileStore.context_for(file_ids, owner, query, token_budget)` to get the passages for a prompt.
"""

from pensieve.files.retrieval import RetrievedChunk, RetrievedContext
from pensieve.files.store import FileStore

__all__ = ["FileStore", "RetrievedChunk", "RetrievedContext"]
