"""Chat formats: sandboxed GGUF templates, built-in turn formats and the base-model dialogue."""

from __future__ import annotations

import pytest

from pensieve.engine.chat_template import (
    ChatTemplateError,
    choose_chat_format,
    looks_instruction_tuned,
    render_chat_prompt,
)
from pensieve.engine_api import ChatMessage

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MESSAGES = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Hi"),
    ChatMessage("assistant", "Hello!"),
    ChatMessage("user", "Capital of France?"),
)


def render(chat_format: str, template: str | None = None, messages: tuple[ChatMessage, ...] = MESSAGES) -> str:
    prompt = render_chat_prompt(messages, chat_format=chat_format, template=template, bos_token="<s>", eos_token="</s>")
    return prompt.text


def test_gguf_template_is_rendered_with_generation_prompt() -> None:
    text = render("template", CHATML_TEMPLATE)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_template_cannot_reach_python_internals() -> None:
    hostile = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(ChatTemplateError):
        render("template", hostile)


def test_template_raise_exception_becomes_a_client_error() -> None:
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        render("template", "{{ raise_exception('roles must alternate') }}")


def test_template_syntax_error_is_reported() -> None:
    with pytest.raises(ChatTemplateError, match="failed to render"):
        render("template", "{% for m in messages %}")


def test_gemma_turn_format_puts_system_text_in_first_user_turn() -> None:
    text = render("gemma")
    assert text == (
        "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nCapital of France?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_dialogue_format_ends_with_assistant_cue_and_has_stops() -> None:
    prompt = render_chat_prompt(MESSAGES, chat_format="dialogue", template=None, bos_token="<s>", eos_token="</s>")
    assert prompt.text.startswith("<s>")
    assert prompt.text.endswith("User: Capital of France?\n\nAssistant:")
    assert "Be brief." in prompt.text
    assert "\nUser:" in prompt.stop


def test_consecutive_user_messages_are_merged() -> None:
    text = render("chatml", messages=(ChatMessage("user", "a"), ChatMessage("user", "b")))
    assert text == "<|im_start|>user\na\n\nb<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(
    ("requested", "has_template", "arch", "tuned", "expected"),
    [
        ("auto", True, "gemma3", False, "template"),
        ("auto", False, "gemma3", True, "gemma"),
        ("auto", False, "gemma3", False, "dialogue"),
        ("auto", False, "qwen2", True, "chatml"),
        ("chatml", True, "gemma3", True, "chatml"),
        ("template", False, "gemma3", True, "chatml"),
    ],
)
def test_format_choice(requested: str, has_template: bool, arch: str, tuned: bool, expected: str) -> None:
    assert (
        choose_chat_format(requested, has_template=has_template, architecture=arch, instruction_tuned=tuned) == expected
    )


def test_instruction_tuned_names() -> None:
    assert looks_instruction_tuned("gemma-3-270m-it-q4_k_m")
    assert looks_instruction_tuned("Qwen2.5 0.5B Instruct")
    assert not looks_instruction_tuned("Gemma 3 270m", "gemma-3-270m-q4_k_m")
    assert not looks_instruction_tuned("bitwise-model")  # "it" must be a word, not a substring
