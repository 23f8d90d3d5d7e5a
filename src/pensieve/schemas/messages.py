"""The messages of a chat request: roles, text content and the content parts refused with a clear error.

Split from schemas/requests.py so the request bodies and the message shapes each stay one readable module.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pensieve.errors import UnsupportedParameterError


class StrictModel(BaseModel):
    """A request part that refuses coerced types (a string where a number belongs) and ignores unknown fields."""

    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(StrictModel):
    """A text part of a message's content."""

    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    """Any non-text content part (image_url, input_audio, file); rejected with a clear message."""

    model_config = ConfigDict(extra="allow")
    type: str


ContentPart = Annotated[TextPart | OtherPart, Field(union_mode="left_to_right")]


class ChatMessageIn(StrictModel):
    """One message of a chat request."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self, index: int) -> str:
        """The content flattened to text; non-text parts are refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if not isinstance(part, TextPart):
                raise UnsupportedParameterError(
                    f"Content parts of type '{part.type}' are not supported: local models here accept text only.",
                    param=f"messages[{index}].content",
                )
            texts.append(part.text)
        return "\n".join(texts)
