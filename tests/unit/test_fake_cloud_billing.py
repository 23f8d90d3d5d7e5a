"""The fake cloud bills like a provider: prompt plus every token sent, abandoned and cut streams included."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from support.fake_cloud import FakeCloud, chat_prompt_tokens

KEY = "sk-fake-billing-1"
MESSAGES = [{"role": "user", "content": "one two three four"}]


@pytest.fixture
def fake() -> Iterator[FakeCloud]:
    with FakeCloud(api_key=KEY, hang_seconds=10) as cloud:
        yield cloud


@pytest.fixture
def client(fake: FakeCloud) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=10)
    yield sdk
    sdk.close()


def test_whole_and_streamed_answers_bill_their_usage(fake: FakeCloud, client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="big-model", messages=MESSAGES)  # type: ignore[arg-type]
    assert whole.usage is not None
    stream = client.chat.completions.create(
        model="big-model",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)  # read to the end: the fake bills once it has sent everything
    usage = chunks[-1].usage
    assert usage is not None
    expected = {"prompt_tokens": whole.usage.prompt_tokens, "completion_tokens": whole.usage.completion_tokens}
    assert fake.bills == [expected, expected]
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected["prompt_tokens"], expected["completion_tokens"])
    assert fake.billed_tokens() == (2 * whole.usage.prompt_tokens, 2 * whole.usage.completion_tokens)


def test_an_abandoned_stream_bills_what_was_sent_before_the_stall(fake: FakeCloud, client: openai.OpenAI) -> None:
    fake.set_fault(stall_after_chunks=2)
    stream = client.chat.completions.create(model="big-model", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    texts = []
    for chunk in stream:
        texts.append(chunk.choices[0].delta.content or "")
        if len([text for text in texts if text]) == 2:
            break
    stream.close()  # hang up: the stalled fake notices and bills
    deadline = time.monotonic() + 10
    while not fake.bills and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = "".join(texts)
    assert sent == "Echo: one "
    assert fake.bills == [{"prompt_tokens": chat_prompt_tokens(MESSAGES), "completion_tokens": 3}]


def test_a_stream_dropped_before_any_text_bills_nothing(fake: FakeCloud, client: openai.OpenAI) -> None:
    fake.set_fault(drop_after_chunks=0)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="big-model", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert fake.bills == []
    fake.reset()
    assert fake.billed_tokens() == (0, 0)
