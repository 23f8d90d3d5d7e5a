"""A chat request that names uploaded files (`file_ids`): their most relevant passages go into the prompt.

The question is the last user message; `FileStore.context_for` picks the best passages of the named files
within PENSIEVE_FILE_CONTEXT_TOKENS, and they are put in front of that question in the same message
(every chat template handles one user message, and a small model follows excerpts placed next to the
question better than a second system prompt). The response lists the passages used (file, page or line
range, score) in `x-pensieve-citations` and, for a whole answer, a `citations` field.

A file found to hold private data at upload keeps the request local, exactly as if the text had been
typed: its privacy verdict (never its text) goes to the planner like a private session's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pensieve.errors import InvalidRequestError
from pensieve.files.retrieval import RetrievedContext
from pensieve.files.store import FileStore
from pensieve.schemas.messages import ChatMessageIn
from pensieve.schemas.requests import ChatCompletionRequest

CITATIONS_HEADER = "x-pensieve-citations"
PREAMBLE = "Answer using these excerpts from the attached files when they are relevant."


@dataclass(frozen=True)
class Attachments:
    """The passages chosen for one request, the private data its files hold, and the question as asked."""

    context: RetrievedContext
    question: str

    @property
    def private_kinds(self) -> tuple[str, ...]:
        """The kinds of private data the named files hold (their upload verdicts)."""
        return self.context.private_kinds

    def citations(self) -> list[dict[str, Any]]:
        """The passages used, for the response and the session record (no text: the file holds it)."""
        return [
            {
                "file_id": chunk.file_id,
                "filename": chunk.filename,
                "location": chunk.location,
                "page": chunk.page,
                "lines": [chunk.line_start, chunk.line_end],
                "score": round(chunk.score, 4),
            }
            for chunk in self.context.chunks
        ]

    def headers(self) -> dict[str, str]:
        """`x-pensieve-citations: file-1 page 7 (3.21), file-2 lines 10-32 (1.05)` (ids only: headers are ASCII)."""
        used = ", ".join(f"{c.file_id} {c.location} ({c.score:.2f})" for c in self.context.chunks)
        return {CITATIONS_HEADER: used} if used else {}


async def attach_files(
    body: ChatCompletionRequest, files: FileStore, *, owner: str, token_budget: int
) -> tuple[Attachments, ChatCompletionRequest]:
    """The passages of `body.file_ids` for its last user message, and the body with them put before it."""
    file_ids = list(body.file_ids or [])
    last = next((i for i in range(len(body.messages) - 1, -1, -1) if body.messages[i].role == "user"), None)
    if last is None:
        raise InvalidRequestError("file_ids need a user message to answer from the files.", param="file_ids")
    question = body.messages[last].text(last)
    context = await asyncio.to_thread(files.context_for, file_ids, owner, question, token_budget)
    attachments = Attachments(context, question)
    if not context.chunks:
        return attachments, body
    content = f"{PREAMBLE}\n\n{context.as_prompt()}\n\nQuestion: {question}"
    messages = list(body.messages)
    messages[last] = ChatMessageIn(role="user", content=content, name=messages[last].name)
    return attachments, body.model_copy(update={"messages": messages})
