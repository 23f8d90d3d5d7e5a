"""Sampled answers never contain control, turn-marker or multimodal placeholder tokens as text."""

from __future__ import annotations

import re

import openai
import pytest

pytestmark = pytest.mark.integration

SPECIAL_STRINGS = (
    "<start_of_image>",
    "<end_of_image>",
    "<end_of_turn>",
    "<start_of_turn>",
    "<eos>",
    "<bos>",
    "<pad>",
    "[multimodal]",
)
UNUSED_TOKEN = re.compile(r"<unused\d+>")

PROMPTS = (
    "Describe the picture you would paint of a mountain lake.",
    "Write a short HTML page with a title and a list.",
    "Tell me a joke about computers.",
    "What happens at the end of a conversation?",
    "Show an image of a cat, then describe it.",
    "List five fruits, one per line.",
    "Translate 'good morning' into French, German and Japanese.",
    "Write the first lines of a chat transcript between two friends.",
)
SEEDS = (11, 12)


def _leaks(text: str) -> list[str]:
    found = [marker for marker in SPECIAL_STRINGS if marker in text]
    found += UNUSED_TOKEN.findall(text)
    return found


def test_sampled_chat_answers_contain_no_special_tokens(client: openai.OpenAI, model_id: str) -> None:
    problems: list[str] = []
    produced = 0
    for prompt in PROMPTS:
        for seed in SEEDS:
            completion = client.chat.completions.create(
                model=model_id,
                messages=[{"role": "user", "content": prompt}],
                temperature=1.0,
                # The whole distribution: a special token that is not banned would show up here.
                top_p=1.0,
                extra_body={"top_k": 0, "min_p": 0.0},
                seed=seed,
                max_tokens=48,
            )
            text = completion.choices[0].message.content or ""
            produced += len(text)
            if leaks := _leaks(text):
                problems.append(f"{prompt!r} seed {seed}: {leaks} in {text!r}")
    assert not problems, "\n".join(problems)
    assert produced > 0


def test_sampled_text_completions_contain_no_special_tokens(client: openai.OpenAI, model_id: str) -> None:
    problems: list[str] = []
    for prompt in ("Image description:", "Transcript of a conversation with an AI model:\n"):
        for seed in SEEDS:
            completion = client.completions.create(
                model=model_id,
                prompt=prompt,
                temperature=1.0,
                top_p=1.0,
                extra_body={"top_k": 0, "min_p": 0.0},
                seed=seed,
                max_tokens=48,
            )
            text = completion.choices[0].text
            if leaks := _leaks(text):
                problems.append(f"{prompt!r} seed {seed}: {leaks} in {text!r}")
    assert not problems, "\n".join(problems)
