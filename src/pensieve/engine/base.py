"""The Engine protocol: what the server needs from anything that generates text (local or cloud).

Contract:
- `generate` is an async generator of GenerationChunk; the final chunk has finish_reason and usage.
- Errors a client caused (context too long, bad parameter) are raised before the first chunk.
- Closing the generator early (client disconnect) cancels the run within a token or two.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol, runtime_checkable

from pensieve.engine.types import EngineStats, GenerationChunk, GenerationRequest


@runtime_checkable
class Engine(Protocol):
    """A loaded model that can generate text."""

    @property
    def model_id(self) -> str:
        """The id clients use for this model."""
        ...

    @property
    def context_length(self) -> int:
        """Tokens the model can attend to (prompt + completion)."""
        ...

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens the request's prompt takes once formatted, without generating anything."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """Stream the completion of `request`."""
        ...

    def stats(self) -> EngineStats:
        """Current load and speed figures."""
        ...

    async def close(self) -> None:
        """Stop accepting work and free the model's memory."""
        ...
