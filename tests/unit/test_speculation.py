"""Speculative decoding by prompt lookup: the drafter, the adaptive draft length, and the scheduler's
verification over fake contexts (greedy output unchanged; sampled output from the same distribution).
The real model runs in tests/integration/test_live_speculative.py."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pensieve.engine.llamacpp.batch_context import BatchItem
from pensieve.engine.scheduler import Scheduler
from pensieve.engine.speculation import ROW_COST, PromptLookup, Speculation, expected_tokens
from pensieve.engine.worker_protocol import DoneEvent, Job, TokenEvent
from pensieve.engine_api import SamplingParams
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest, RequestDefaults
from pensieve.settings_sections import SamplingSettings
from support.scheduler_fakes import FakeContext, FakeSampler, run_until_idle

# One sequence, with room for long drafts (the scheduler tests' defaults are smaller).
SINGLE = {"n_parallel": 1, "n_batch": 64, "kv_size": 256, "window": 256}
# Plain decoding of the longest answers here takes more steps than the shared default allows.
STEPS = 200


def test_lookup_proposes_what_followed_the_latest_earlier_occurrence() -> None:
    lookup = PromptLookup()
    history = [5, 1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 4, 1, 2, 3]
    assert lookup.draft(history, 3) == ([7, 8, 4], 3)  # the 2nd occurrence of 1 2 3, not the 1st


def test_lookup_prefers_the_longer_ngram_and_is_incremental() -> None:
    lookup = PromptLookup()
    history = [7, 2, 3, 50, 8, 2, 3, 60, 7, 2, 3]
    assert lookup.draft(history, 1) == ([50], 3)  # 3-gram 7 2 3 beats the later 2-gram 2 3 (-> 60)
    history += [50, 51, 2, 3]
    assert lookup.draft(history, 2) == ([50, 51], 2)  # new tokens were indexed: the latest 2 3 -> 50 51


def test_lookup_copies_overlapping_repeats_and_finds_nothing_new() -> None:
    lookup = PromptLookup()
    assert lookup.draft([4, 5, 4, 5], 5) == ([4, 5, 4, 5, 4], 2)
    assert PromptLookup().draft([1, 2, 3, 4], 4) == ([], 0)


def test_the_agreement_before_a_match_is_measured() -> None:
    passage = list(range(100, 120))
    assert PromptLookup().draft([*passage, 7, *passage[:12]], 4) == (passage[12:16], 12)


def test_draft_lengths_fill_whole_tiles_of_rows() -> None:
    speculation = Speculation(rid=1)
    length = speculation.draft_length(rows=1, limit=100, matched=16)
    assert length + 1 in ROW_COST and length > 0
    assert speculation.draft_length(rows=1, limit=2, matched=16) == 0  # no tile fits: 3 rows cost like 4


def test_failed_drafts_stop_short_matches_but_not_a_copy_in_progress() -> None:
    speculation = Speculation(rid=1)
    for _ in range(3):
        speculation.record(drafted=7, accepted=0)
    assert speculation.acceptance < 0.5
    assert speculation.draft_length(rows=1, limit=15, matched=3) == 0
    assert speculation.draft_length(rows=1, limit=15, matched=32) >= 7
    for _ in range(10):
        speculation.record(drafted=3, accepted=3)
    assert speculation.draft_length(rows=1, limit=15, matched=3) >= 7


def test_expected_tokens() -> None:
    assert expected_tokens(1.0, 3) == 4.0
    assert math.isclose(expected_tokens(0.5, 2), 1.75)


def copy_job(rid: int, prompt: list[int], max_tokens: int, *, speculative: bool = True) -> Job:
    return Job(rid, prompt, SamplingParams(temperature=0), max_tokens=max_tokens, speculative=speculative)


@dataclass
class CopyContext(FakeContext):
    """'Samples' the prompt's continuation: the token after position p is `text[p + 1]` (a model copying)."""

    text: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # logits rows per decode

    def decode(self, items: Sequence[BatchItem]) -> None:
        super().decode(items)
        self.rows.append(sum(item.logits for item in items))

    def sample(self, sampler: FakeSampler, index: int | None, *, saved: BatchItem | None = None) -> int:
        return self.text[self.row(index, saved).pos + 1]


def test_greedy_copy_is_unchanged_and_takes_fewer_steps() -> None:
    passage = [100 + n for n in range(40)]
    text = [1, 2, *passage, 3, *passage, 4]  # prompt: 1 2 passage 3 passage[:8]; the answer copies the rest
    prompt = text[: 2 + 40 + 1 + 8]
    runs = {}
    for speculative in (True, False):
        context = CopyContext(text=text, **SINGLE)
        scheduler = Scheduler(context)  # type: ignore[arg-type]
        scheduler.submit(copy_job(1, prompt, 30, speculative=speculative))
        events = run_until_idle(scheduler, STEPS)
        runs[speculative] = ([e.token for e in events if isinstance(e, TokenEvent)], len(context.batches))
        assert isinstance(events[-1], DoneEvent) and events[-1].completion_tokens == 30
        assert all(rows in ROW_COST for rows in context.rows[1:])  # whole tiles of logits rows
        if speculative:
            assert scheduler.accepted > 20 and scheduler.drafted >= scheduler.accepted
            # The cache holds exactly the evaluated-and-kept tokens: prompt + answer but the last.
            assert scheduler.slots[0].cached == text[: len(prompt) + 29]
        else:
            assert scheduler.speculated() == (0, 0)
    assert runs[True][0] == runs[False][0] == text[len(prompt) : len(prompt) + 30]
    assert runs[True][1] < runs[False][1] / 3


def test_a_rejected_draft_is_forgotten_and_eog_inside_a_draft_ends_the_answer() -> None:
    passage = [100 + n for n in range(20)]
    text = [1, *passage, 3, *passage[:10], 0, 0]  # the copy diverges after 10 tokens with EOG (0)
    prompt = text[: 1 + 20 + 1 + 3]
    context = CopyContext(text=text, **SINGLE)
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(copy_job(1, prompt, 50))
    events = run_until_idle(scheduler, STEPS)
    assert [e.token for e in events if isinstance(e, TokenEvent)] == passage[3:10]
    assert isinstance(events[-1], DoneEvent) and events[-1].finish == "stop"
    kept = len(scheduler.slots[0].cached)
    assert scheduler.slots[0].cached == text[:kept]
    assert (0, kept) in context.forgotten  # the KV of the rejected draft tokens went with them


# A 3-token Markov chain (0 is EOG and never drawn): row i of the batch is 'the model' after its token.
TRANSITIONS = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.1, 0.7, 0.2], [0.0, 0.2, 0.1, 0.7], [0.0, 0.6, 0.3, 0.1]])


@dataclass
class MarkovContext(FakeContext):
    """Draws the next token from TRANSITIONS[token of the row] with its own seeded generator."""

    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))

    def sample(self, sampler: FakeSampler, index: int | None, *, saved: BatchItem | None = None) -> int:
        return int(self.rng.choice(4, p=TRANSITIONS[self.row(index, saved).token]))


def test_sampled_output_keeps_the_distribution_of_plain_decoding() -> None:
    prompt = [1, 2, 3] * 8 + [1, 2]  # a long repeat: the lookup drafts 3 1 2 ..., right often, wrong often
    length, runs = 4, 6000
    context = MarkovContext(**SINGLE)
    counts: Counter[tuple[int, ...]] = Counter()
    drafted = accepted = 0
    for run in range(runs):
        scheduler = Scheduler(context)  # type: ignore[arg-type]
        # One token more than counted: the first is sampled with the prompt's last slice (never drafted), and
        # a draft needs room for three more tokens (a 4-row step).
        scheduler.submit(Job(run, prompt, SamplingParams(temperature=1.0), max_tokens=length + 1))
        answer = tuple(e.token for e in run_until_idle(scheduler, STEPS) if isinstance(e, TokenEvent))
        counts[answer[:length]] += 1
        drafted, accepted = drafted + scheduler.drafted, accepted + scheduler.accepted
    assert drafted > runs and 0 < accepted < drafted  # drafts were made, some kept and some not
    # Pearson's chi-square against the chain's exact probabilities of all 81 answers (80 degrees of freedom:
    # the 99.9% quantile is 124.8).
    chi_square = 0.0
    for answer in itertools.product((1, 2, 3), repeat=length):
        probability, previous = 1.0, prompt[-1]
        for token in answer:
            probability *= TRANSITIONS[previous][token]
            previous = token
        expected = probability * runs
        chi_square += (counts[answer] - expected) ** 2 / expected
    assert chi_square < 124.8


def test_the_request_field_and_the_server_default_reach_the_engine_request() -> None:
    on, off = (
        RequestDefaults(SamplingSettings(), "m", True),
        RequestDefaults(SamplingSettings(), "m", True, speculative=False),
    )
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    assert ChatCompletionRequest.model_validate(chat).to_request(on).speculative
    assert not ChatCompletionRequest.model_validate(chat).to_request(off).speculative
    assert ChatCompletionRequest.model_validate({**chat, "speculative": True}).to_request(off).speculative
    completion = CompletionRequest.model_validate({"prompt": ["a", "b"], "speculative": False})
    assert [request.speculative for request in completion.to_requests(on)] == [False, False]
