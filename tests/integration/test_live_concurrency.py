"""Concurrent requests queue on the one engine and each gets its own, correct answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

pytestmark = pytest.mark.integration

QUESTIONS = {
    "What is the capital of France?": "Paris",
    "What is the capital of Germany?": "Berlin",
    "What is the capital of Italy?": "Rome",
    "What is the capital of Japan?": "Tokyo",
}


def test_concurrent_chat_requests_all_complete_with_their_own_answers(client: openai.OpenAI, model_id: str) -> None:
    def ask(question: str) -> str:
        completion = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=16
        )
        return completion.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=len(QUESTIONS)) as pool:
        answers = dict(zip(QUESTIONS, pool.map(ask, QUESTIONS), strict=True))

    for question, city in QUESTIONS.items():
        answer = answers[question]
        assert city in answer, f"{question!r} -> {answer!r}"
        others = [other for other in QUESTIONS.values() if other != city and other in answer]
        assert not others, f"{question!r} -> {answer!r} mentions {others}: answers crossed"
    assert len(set(answers.values())) == len(QUESTIONS)


def test_concurrent_streams_are_not_interleaved(client: openai.OpenAI, model_id: str) -> None:
    def ask(question: str) -> str:
        stream = client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            max_tokens=16,
            stream=True,
        )
        return "".join(choice.delta.content or "" for chunk in stream for choice in chunk.choices)

    with ThreadPoolExecutor(max_workers=len(QUESTIONS)) as pool:
        answers = dict(zip(QUESTIONS, pool.map(ask, QUESTIONS), strict=True))
    for question, city in QUESTIONS.items():
        assert city in answers[question], f"{question!r} -> {answers[question]!r}"
