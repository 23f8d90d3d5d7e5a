"""The messages of a chat request: roles, text content, tool calls and results, refused content parts.

Split from schemas/requests.py so the request bodies and the message shapes each stay one readable module.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pensieve.engine_api import ChatMessage, ToolCall
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


class FunctionCallIn(StrictModel):
    """`tool_calls[i].function` of an assistant message: the name and the arguments as a JSON text."""

    name: str
    arguments: str = ""


class ToolCallIn(StrictModel):
    """One function call of an assistant message in the history."""

    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCallIn

    def as_call(self) -> ToolCall:
        """The engine's plain form."""
        return ToolCall(self.id, self.function.name, self.function.arguments)


class ChatMessageIn(StrictModel):
    """One message of a chat request (an assistant's may hold tool_calls, a tool's answers one by id)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=200)

    @classmethod
    def of(cls, message: ChatMessage) -> ChatMessageIn:
        """A request message from the engine's form (tool calls and the answered call's id kept)."""
        calls = [
            ToolCallIn(id=c.id, function=FunctionCallIn(name=c.name, arguments=c.arguments)) for c in message.tool_calls
        ]
        return cls(
            role=message.role,
            content=message.content if message.content or not calls else None,
            name=message.name,
            tool_calls=calls or None,
            tool_call_id=message.tool_call_id,
        )

    def calls(self) -> tuple[ToolCall, ...]:
        """The function calls of this message (only an assistant's count)."""
        return tuple(call.as_call() for call in self.tool_calls or ()) if self.role == "assistant" else ()

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
