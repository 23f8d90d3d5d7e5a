"""Everything a cloud call carries is scanned, and redacted in mode `redact`: outgoing_texts vs CloudEngine's payload.

A unique marker sits in every field the request schemas accept and the CloudEngine forwards (message
content, names, the prompt, stop sequences, a response_format JSON schema's names, descriptions, enums
and keys, tools, tool calls and the ids that link a result to its call); the payload is built by
CloudEngine's own helpers, so a newly forwarded field that the privacy guard does not see fails here.
"""

from __future__ import annotations

import json
import re

from pensieve.burst.outgoing import outgoing_texts, with_texts
from pensieve.burst.runner import redacted
from pensieve.cloud.payload import chat_message as _message
from pensieve.cloud.payload import sampling_params as _sampling
from pensieve.cloud.payload import tool_params
from pensieve.engine_api import ChatMessage, GenerationRequest, SamplingParams
from pensieve.privacy.scanner import PrivacyConfig, PrivacyScanner
from pensieve.schemas.requests import ChatCompletionRequest, RequestDefaults
from pensieve.settings_sections import SamplingSettings

MARKER = re.compile(r"secretmark\d+")


def _body() -> ChatCompletionRequest:
    schema = {
        "type": "object",
        "description": "secretmark1 schema description",
        "properties": {
            "secretmark2": {"type": "string", "enum": ["secretmark3"], "description": "secretmark4"},
            "plain": {"type": "string", "default": "secretmark5"},
        },
    }
    return ChatCompletionRequest.model_validate(
        {
            "model": "auto",
            "messages": [
                {"role": "system", "content": "secretmark6 system", "name": "secretmark7"},
                {"role": "user", "content": [{"type": "text", "text": "part secretmark8"}], "name": "secretmark9"},
                {"role": "assistant", "content": "secretmark10"},
                {"role": "tool", "content": "secretmark11"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "secretmark15",
                            "type": "function",
                            "function": {"name": "secretmark16", "arguments": '{"to": "secretmark17"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "secretmark15", "content": "secretmark18"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "secretmark16",
                        "description": "secretmark19",
                        "parameters": {"type": "object", "properties": {"secretmark20": {"enum": ["secretmark21"]}}},
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "secretmark16"}},
            "stop": ["secretmark12", "END"],
            "response_format": {"type": "json_schema", "json_schema": {"name": "secretmark13", "schema": schema}},
            "user": "secretmark14",  # accepted, never forwarded
            "max_tokens": 8,
        }
    )


def _payload(request: GenerationRequest) -> str:
    """What CloudEngine sends for a chat request, as JSON text."""
    assert request.messages is not None
    messages = [_message(m) for m in request.messages]
    return json.dumps({"messages": messages, **_sampling(request), **tool_params(request)})


def _request() -> GenerationRequest:
    return _body().to_request(RequestDefaults(SamplingSettings(), "local-model", True))


def test_every_forwarded_marker_is_in_the_scanned_texts() -> None:
    request = _request()
    forwarded = set(MARKER.findall(_payload(request)))
    scanned = set(MARKER.findall("\n".join(outgoing_texts(request))))
    assert forwarded, "the payload carries the markers"
    assert forwarded <= scanned
    assert "secretmark14" not in forwarded  # `user` stays home


def test_redaction_leaves_no_marker_in_the_payload() -> None:
    scanner = PrivacyScanner(PrivacyConfig(detectors=frozenset(), custom_patterns=(("mark", r"secretmark\d+"),)))
    masked = redacted(_request(), scanner)
    payload = _payload(masked)
    assert MARKER.search(payload) is None
    assert "[REDACTED:MARK]" in payload and '"END"' in payload  # clean parts stay as they were


def test_with_texts_round_trips_and_keeps_the_shape() -> None:
    request = _request()
    assert with_texts(request, outgoing_texts(request)) == request
    prompt = GenerationRequest(model="m", params=SamplingParams(stop=("x",)), prompt="hello")
    assert outgoing_texts(prompt) == ["hello", "x"]
    upper = with_texts(prompt, [text.upper() for text in outgoing_texts(prompt)])
    assert (upper.prompt, upper.params.stop) == ("HELLO", ("X",))
    chat = GenerationRequest(model="m", params=SamplingParams(), messages=(ChatMessage("user", "hi"),))
    assert with_texts(chat, ["HI", ""]).messages == (ChatMessage("user", "HI", None),)
