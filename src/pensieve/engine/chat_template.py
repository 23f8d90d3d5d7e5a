"""Chat messages -> prompt text: the GGUF's own Jinja template, sandboxed, or a built-in turn format.

A template from a model file is untrusted code, so it runs in Jinja's immutable sandbox: it can
neither reach Python internals nor mutate the messages. Files without a template (such as the default
Gemma 3 270M base model) get a built-in format chosen by `general.architecture`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pensieve.engine_api import ChatMessage, Role
from pensieve.errors import InvalidRequestError

Formatter = Callable[[Sequence[ChatMessage], str], str]


class ChatTemplateError(InvalidRequestError):
    """The model's chat template rejected the conversation or failed to render."""

    default_code = "invalid_chat_template_input"


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(f"The model's chat template rejected the messages: {message}", param="messages")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    # Hugging Face templates expect non-ASCII kept as is.
    return json.dumps(value, ensure_ascii=False, indent=indent)


@functools.lru_cache(maxsize=16)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters["tojson"] = _tojson
    return env


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    return _environment().from_string(template)


def _arguments(text: str) -> object:
    """A call's arguments as Hugging Face templates expect them: a mapping (the text when it is no JSON)."""
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text


def _payload(message: ChatMessage) -> dict[str, Any]:
    """One message as Hugging Face passes it to a template (tool calls and the answered call's id included)."""
    payload: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        payload["name"] = message.name
    if message.tool_calls:
        payload["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        payload["tool_call_id"] = message.tool_call_id
    return payload


def render_jinja_template(
    template: str,
    messages: Sequence[ChatMessage],
    *,
    bos_token: str,
    eos_token: str,
    tools: Sequence[dict[str, Any]] = (),
) -> str:
    """Render a Hugging Face style chat template in the sandbox, ending with the assistant's cue; `tools`
    (OpenAI-shaped) go to templates that render them (engine/tool_prompt.py decides which do)."""
    try:
        return str(
            _compile(template).render(
                messages=[_payload(message) for message in messages],
                add_generation_prompt=True,
                bos_token=bos_token,
                eos_token=eos_token,
                tools=list(tools) or None,
            )
        )
    except ChatTemplateError:
        raise
    except TemplateError as exc:
        raise ChatTemplateError(f"The model's chat template failed to render: {exc}", param="messages") from exc


def _system_text(messages: Sequence[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    """Split off system/developer instructions; merge consecutive turns of the same speaker."""
    system_parts = [m.content for m in messages if m.role in ("system", "developer")]
    turns: list[ChatMessage] = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        role: Role = "assistant" if message.role == "assistant" else "user"
        if turns and turns[-1].role == role:
            turns[-1] = ChatMessage(role=role, content=f"{turns[-1].content}\n\n{message.content}")
        else:
            turns.append(ChatMessage(role=role, content=message.content))
    return "\n\n".join(part for part in system_parts if part), turns


def format_gemma(messages: Sequence[ChatMessage], bos_token: str) -> str:
    """Gemma's turn format; system text goes at the top of the first user turn, as Gemma's own template does."""
    system, turns = _system_text(messages)
    parts = [bos_token]
    if system and (not turns or turns[0].role != "user"):
        turns.insert(0, ChatMessage(role="user", content=""))
    for index, turn in enumerate(turns):
        role = "model" if turn.role == "assistant" else "user"
        prefix = f"{system}\n\n" if index == 0 and system else ""
        parts.append(f"<start_of_turn>{role}\n{prefix}{turn.content.strip()}<end_of_turn>\n")
    parts.append("<start_of_turn>model\n")
    return "".join(parts)


def format_chatml(messages: Sequence[ChatMessage], bos_token: str) -> str:
    """ChatML (<|im_start|>role ... <|im_end|>), the format of Qwen and many fine-tunes."""
    system, turns = _system_text(messages)
    parts = [f"<|im_start|>system\n{system}<|im_end|>\n"] if system else []
    parts += [f"<|im_start|>{turn.role}\n{turn.content}<|im_end|>\n" for turn in turns]
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def format_phi3(messages: Sequence[ChatMessage], bos_token: str) -> str:
    """Phi-3's <|role|> ... <|end|> format."""
    system, turns = _system_text(messages)
    parts = [f"<|system|>\n{system}<|end|>\n"] if system else []
    parts += [f"<|{turn.role}|>\n{turn.content}<|end|>\n" for turn in turns]
    parts.append("<|assistant|>\n")
    return "".join(parts)


_DIALOGUE_PREAMBLE = (
    "This is a conversation between a user and a helpful, knowledgeable AI assistant. "
    "The assistant gives correct, clear and concise answers.\n\n"
    "User: Hello! Who are you?\n"
    "Assistant: Hello! I am a helpful AI assistant. How can I help you today?\n\n"
    "User: What is the largest planet in the solar system?\n"
    "Assistant: The largest planet in the solar system is Jupiter.\n\n"
)
# A base model continues the transcript; these end the assistant's turn where the user's would begin.
DIALOGUE_STOPS = ("\nUser:", "\nUSER:")


def format_dialogue(messages: Sequence[ChatMessage], bos_token: str) -> str:
    """A plain-text transcript with a short worked example, for base models that know no turn format.

    Base models (such as the default Gemma 3 270M) never learnt their family's turn tokens, and with
    them they echo the question back; continuing a "User:/Assistant:" transcript they answer it.
    """
    system, turns = _system_text(messages)
    parts = [bos_token, _DIALOGUE_PREAMBLE]
    if system:
        parts.append(f"{system}\n\n")
    for turn in turns:
        speaker = "Assistant" if turn.role == "assistant" else "User"
        parts.append(f"{speaker}: {turn.content.strip()}\n\n")
    parts.append("Assistant:")
    return "".join(parts)


BUILTIN_FORMATS: dict[str, Formatter] = {
    "gemma": format_gemma,
    "chatml": format_chatml,
    "phi3": format_phi3,
    "dialogue": format_dialogue,
}
CHAT_FORMAT_CHOICES = ("auto", "template", *BUILTIN_FORMATS)
_ARCHITECTURE_FORMATS = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "phi3": "phi3",
}
_TUNED_MARKERS = {"it", "instruct", "chat", "sft", "dpo", "rlhf", "assistant"}


def looks_instruction_tuned(*names: str | None) -> bool:
    """Whether a model's names (general.name, finetune, file stem) mark it as chat/instruction tuned."""
    words: set[str] = set()
    for name in names:
        if name:
            words.update(re.split(r"[^a-z0-9]+", name.lower()))
    return bool(words & _TUNED_MARKERS)


def choose_chat_format(requested: str, *, has_template: bool, architecture: str | None, instruction_tuned: bool) -> str:
    """The chat format to use: the file's template, a turn format by architecture, or the dialogue.

    `requested` is the PENSIEVE_CHAT_FORMAT setting; "auto" prefers the file's template, then the
    architecture's turn format for tuned models, then the dialogue transcript for base models.
    """
    if requested == "template" or (requested == "auto" and has_template):
        return "template" if has_template else "chatml"
    if requested != "auto":
        return requested
    if not instruction_tuned:
        return "dialogue"
    return _ARCHITECTURE_FORMATS.get(architecture or "", "chatml")


@dataclass(frozen=True)
class ChatPrompt:
    """Prompt text for a chat plus stop sequences the format itself needs."""

    text: str
    stop: tuple[str, ...] = ()


def render_chat_prompt(
    messages: Sequence[ChatMessage],
    *,
    chat_format: str,
    template: str | None,
    bos_token: str,
    eos_token: str,
    tools: Sequence[dict[str, Any]] = (),
) -> ChatPrompt:
    """The prompt for `messages` in `chat_format` (a name from choose_chat_format); `tools` reach a template."""
    if chat_format == "template" and template:
        return ChatPrompt(
            render_jinja_template(template, messages, bos_token=bos_token, eos_token=eos_token, tools=tools)
        )
    formatter = BUILTIN_FORMATS.get(chat_format, format_chatml)
    stops = DIALOGUE_STOPS if formatter is format_dialogue else ()
    return ChatPrompt(formatter(messages, bos_token), stops)
