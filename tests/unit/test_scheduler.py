"""The batching scheduler's bookkeeping (admission, KV budget, prefix cache, chunked prefill, cancel),
over a fake compute context: pure logic, no model. The real model runs in tests/integration."""

from __future__ import annotations

from pensieve.engine.llamacpp.batch_context import SCORING_ROWS, BatchItem
from pensieve.engine.scheduler import Scheduler
from pensieve.engine.worker_protocol import DoneEvent, Job, PromptEvent, TokenEvent
from pensieve.engine_api import SamplingParams
from support.scheduler_fakes import EOG, FakeContext, FakeVocab, run_until_idle


def job(rid: int, prompt: list[int], max_tokens: int = 3) -> Job:
    return Job(rid=rid, prompt=prompt, params=SamplingParams(temperature=0), max_tokens=max_tokens)


def test_two_requests_decode_in_the_same_batches() -> None:
    context = FakeContext()
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(job(1, [10, 11, 12]))
    scheduler.submit(job(2, [20, 21, 22]))
    events = run_until_idle(scheduler)
    tokens = {rid: [e.token for e in events if isinstance(e, TokenEvent) and e.rid == rid] for rid in (1, 2)}
    assert tokens == {1: [13, 14, 15], 2: [23, 24, 25]}
    done = {e.rid: e for e in events if isinstance(e, DoneEvent)}
    assert done[1].finish == "length" and done[1].completion_tokens == 3 and done[1].prompt_tokens == 3
    # After the prompts, each step carries one token of each sequence.
    assert any({item.seq for item in batch} == {0, 1} and len(batch) == 2 for batch in context.batches)


def test_end_of_generation_stops_with_reason_stop() -> None:
    context = FakeContext(stop_at=15)
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(job(1, [10, 11, 12], max_tokens=10))
    events = run_until_idle(scheduler)
    assert [e.token for e in events if isinstance(e, TokenEvent)] == [13, 14]
    assert isinstance(events[-1], DoneEvent) and events[-1].finish == "stop"


def test_a_third_request_waits_for_a_free_slot() -> None:
    scheduler = Scheduler(FakeContext())  # type: ignore[arg-type]
    for rid in (1, 2, 3):
        scheduler.submit(job(rid, [rid * 10, rid * 10 + 1]))
    scheduler.step()
    assert scheduler.load()[:2] == (2, 1)
    events = run_until_idle(scheduler)
    assert {e.rid for e in events if isinstance(e, DoneEvent)} == {1, 2, 3}


def test_long_prompt_is_prefilled_in_slices_while_others_generate() -> None:
    context = FakeContext(n_batch=512, kv_size=1024, window=1024)
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(job(1, [1, 2], max_tokens=50))
    scheduler.step()
    scheduler.step()  # request 1 is generating now
    scheduler.submit(job(2, list(range(100, 400)), max_tokens=2))
    scheduler.step()
    prompt_tokens = [item for item in context.batches[-1] if item.seq == 1 and not item.logits]
    assert 0 < len(prompt_tokens) <= 128  # a slice, not the whole 300-token prompt
    assert any(item.seq == 0 for item in context.batches[-1])  # request 1 kept going in the same step


def test_a_burst_behind_one_generating_stream_fills_the_batch() -> None:
    """Fifteen prompts arriving while the first of a burst already streams are not held to one short slice
    a step: their first tokens matter as much as its next one."""
    context = FakeContext(n_parallel=16, n_batch=512, kv_size=4096, window=256)
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(job(1, [1, 2], max_tokens=50))
    scheduler.step()
    scheduler.step()  # request 1 is generating now
    for rid in range(2, 17):
        scheduler.submit(job(rid, list(range(rid * 1000, rid * 1000 + 60)), max_tokens=4))
    scheduler.step()
    prompt_tokens = [item for item in context.batches[-1] if item.seq != 0]
    assert len(prompt_tokens) > 3 * 128
    assert len(context.batches[-1]) <= 512
    assert any(item.seq == 0 for item in context.batches[-1])  # the stream still got its token


def after_one_request(prompt: list[int]) -> tuple[FakeContext, Scheduler]:
    """A scheduler that has answered `prompt` (2 tokens; its cache kept), with the batch record cleared."""
    context = FakeContext()
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(job(1, prompt, max_tokens=2))
    run_until_idle(scheduler)
    context.batches.clear()
    return context, scheduler


def done_of(scheduler: Scheduler, request: Job) -> DoneEvent:
    scheduler.submit(request)
    return next(e for e in run_until_idle(scheduler) if isinstance(e, DoneEvent))


def test_next_turn_reuses_the_cached_prefix() -> None:
    context, scheduler = after_one_request([5, 6, 7, 8])
    scheduler.submit(job(2, [5, 6, 7, 8, 9, 40, 41], max_tokens=1))
    events = run_until_idle(scheduler)
    first = next(e for e in events if isinstance(e, TokenEvent))
    done = next(e for e in events if isinstance(e, DoneEvent))
    assert done.cached_tokens == first.cached_tokens == 5  # 5 6 7 8 and the answer's first token 9 were in the cache
    evaluated = [item.token for batch in context.batches for item in batch]
    assert evaluated == [40, 41]


def test_a_request_without_prompt_cache_computes_its_prompt_in_full_and_keeps_others_caches() -> None:
    context, scheduler = after_one_request([5, 6, 7, 8])
    fresh = job(2, [5, 6, 7, 8, 9, 40], max_tokens=1)
    fresh.cache_prompt = False
    assert done_of(scheduler, fresh).cached_tokens == 0
    evaluated = [item.token for batch in context.batches for item in batch]
    assert evaluated == [5, 6, 7, 8, 9, 40]
    assert {item.seq for batch in context.batches for item in batch} == {1}  # the other, empty slot
    assert scheduler.slots[0].cached[:4] == [5, 6, 7, 8]  # the first request's cache is still there


def test_another_callers_cached_prompt_is_never_reused() -> None:
    """Prompt-cache reuse stays within one API key: cached_tokens must not reveal another key's prompt."""
    context, scheduler = after_one_request([5, 6, 7, 8])  # cached under the default partition ""
    probe = job(2, [5, 6, 7, 8, 9, 40], max_tokens=1)
    probe.cache_partition = "key:other"
    assert done_of(scheduler, probe).cached_tokens == 0
    evaluated = [item.token for batch in context.batches for item in batch]
    assert evaluated[:6] == [5, 6, 7, 8, 9, 40]
    same_key = job(3, [5, 6, 7, 8, 9, 40, 41], max_tokens=1)
    same_key.cache_partition = "key:other"
    assert done_of(scheduler, same_key).cached_tokens > 0  # its own prompt is reused


def test_kv_budget_evicts_idle_caches_then_waits() -> None:
    context = FakeContext(kv_size=20, window=20)
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(job(1, [1, 2, 3, 4, 5], max_tokens=5))
    run_until_idle(scheduler)
    assert scheduler.slots[0].cached  # its KV stays as a prompt cache
    scheduler.submit(job(2, [50, 51, 52, 53, 54, 55, 56, 57], max_tokens=8))
    scheduler.submit(job(3, [70, 71, 72, 73], max_tokens=8))
    scheduler.step()
    # 16 cells for job 2 leave no room next to job 3's 12: the idle cache went, job 3 waits.
    assert (0, 0) in context.forgotten
    assert scheduler.load()[:2] == (1, 1)
    events = run_until_idle(scheduler)
    assert {e.rid for e in events if isinstance(e, DoneEvent)} == {2, 3}


def test_cancel_frees_the_slot_at_once_and_keeps_the_cache() -> None:
    scheduler = Scheduler(FakeContext())  # type: ignore[arg-type]
    scheduler.submit(job(1, [1, 2, 3], max_tokens=30))
    scheduler.step()
    scheduler.step()
    done = scheduler.cancel(1)
    assert done is not None and done.finish == "cancelled"
    assert scheduler.idle and scheduler.slots[0].cached[:3] == [1, 2, 3]
    assert scheduler.cancel(1) is None
    scheduler.submit(job(2, [9, 9]))
    assert scheduler.cancel(2) == DoneEvent(2, "cancelled", 2, 0, 0)


def test_logprobs_travel_with_tokens() -> None:
    scheduler = Scheduler(FakeContext())  # type: ignore[arg-type]
    request = job(1, [1, 2], max_tokens=1)
    request.top_logprobs = 1
    scheduler.submit(request)
    token = next(e for e in run_until_idle(scheduler) if isinstance(e, TokenEvent))
    assert token.logprob == -0.5 and token.top == ((3, -0.5),)


class ScoringContext(FakeContext):
    """A fake context whose log-probability of token t is -t/100, to see which token each row scored."""

    def logprobs(
        self, index: int | None, token: int, top_n: int, *, saved: BatchItem | None = None
    ) -> tuple[float, list[tuple[int, float]]]:
        assert index is not None and self.batches[-1][index].logits, "a row without logits was read"
        return -token / 100, [(token, -token / 100)][:top_n]


def scoring_job(rid: int, prompt: list[int], max_tokens: int, top: int = 1) -> Job:
    return Job(rid, prompt, SamplingParams(temperature=0), max_tokens, score_prompt=top)


def test_a_scoring_job_scores_every_prompt_token_but_the_first_in_bounded_slices() -> None:
    context = ScoringContext(n_batch=64, kv_size=256, window=128)
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    prompt = list(range(100, 140))
    scheduler.submit(scoring_job(1, prompt, max_tokens=0))
    events = run_until_idle(scheduler)
    scores = [score for event in events if isinstance(event, PromptEvent) for score in event.scores]
    # Position p's logits predict prompt[p + 1]: the scores are those of tokens 2..40 of the prompt, in order.
    assert [logprob for logprob, _ in scores] == [-token / 100 for token in prompt[1:]]
    assert all(top == ((token, -token / 100),) for (_, top), token in zip(scores, prompt[1:], strict=True))
    # Never more than SCORING_ROWS rows of logits in a step; max_tokens 0 never evaluates the last token.
    assert all(sum(item.logits for item in batch) <= SCORING_ROWS for batch in context.batches)
    assert [item.token for batch in context.batches for item in batch] == prompt[:-1]
    done = [event for event in events if isinstance(event, DoneEvent)]
    assert len(done) == 1 and done[0].finish == "length" and done[0].completion_tokens == 0
    assert not any(isinstance(event, TokenEvent) for event in events)


def test_a_scoring_job_reuses_no_cached_prefix_and_then_generates() -> None:
    context = ScoringContext(n_batch=64, kv_size=256, window=128)
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(job(1, [10, 11, 12, 13]))
    run_until_idle(scheduler)
    scheduler.submit(scoring_job(2, [10, 11, 12, 13, 14], max_tokens=2))
    events = run_until_idle(scheduler)
    scores = [score for event in events if isinstance(event, PromptEvent) for score in event.scores]
    assert len(scores) == 4  # the whole prompt was computed, though [10, 11, 12, 13] was cached
    assert [event.token for event in events if isinstance(event, TokenEvent)] == [15, 16]
    done = next(event for event in events if isinstance(event, DoneEvent))
    assert done.cached_tokens == 0 and done.completion_tokens == 2


def test_a_one_token_prompt_scored_with_max_tokens_0_ends_at_once() -> None:
    context = ScoringContext()
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(scoring_job(1, [7], max_tokens=0))
    events = run_until_idle(scheduler, limit=3)
    assert [type(event) for event in events] == [DoneEvent]


def test_ban_first_holds_for_the_first_token_only() -> None:
    context = FakeContext(vocab=FakeVocab(banned_tokens=(99,)))
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(Job(1, [10, 11], SamplingParams(temperature=0), 3, forbid_eog_first=True, ban_first=(5, 6)))
    run_until_idle(scheduler)
    assert context.bans == [(99, EOG, 5, 6), (99,)]


def test_the_prompts_last_token_goes_with_its_last_slice() -> None:
    context = FakeContext()
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    scheduler.submit(job(1, [10, 11, 12], max_tokens=1))
    events = scheduler.step()
    assert [item.token for item in context.batches[0]] == [10, 11, 12]
    assert [item.logits for item in context.batches[0]] == [False, False, True]
    assert [e.token for e in events if isinstance(e, TokenEvent)] == [13]  # sampled from that very step


def test_the_same_prompt_again_samples_from_the_saved_logits_without_evaluating_it() -> None:
    context, scheduler = after_one_request([5, 6, 7, 8])
    scheduler.submit(job(2, [5, 6, 7, 8], max_tokens=2))
    events = run_until_idle(scheduler)
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert [e.token for e in tokens] == [9, 10]  # what the first request got
    assert tokens[0].cached_tokens == 4
    # Nothing of the prompt was evaluated again: the only decode is the answer's first token.
    assert [[item.token for item in batch] for batch in context.batches] == [[9]]


def test_saved_logits_go_when_their_prompt_leaves_the_cache() -> None:
    context, scheduler = after_one_request([5, 6, 7, 8])
    scheduler.submit(job(2, [5, 6, 30], max_tokens=1))  # takes the slot, keeps 5 6 only
    run_until_idle(scheduler)
    assert scheduler.slots[0].saved_for == 3  # now the logits after 5 6 30
    context.batches.clear()
    scheduler.submit(job(3, [5, 6, 7, 8], max_tokens=1))
    run_until_idle(scheduler)
    assert [item.token for item in context.batches[0]] == [7, 8]  # evaluated again, last token with logits


def test_a_seeded_draw_evaluates_the_last_prompt_token_alone_every_time() -> None:
    """One row of logits and a prompt slice's row round differently: a seeded job keeps the one-row path."""
    context = FakeContext()
    scheduler = Scheduler(context)  # type: ignore[arg-type]
    for rid in (1, 2):
        seeded = Job(rid, [10, 11, 12], SamplingParams(temperature=0.9, seed=5), max_tokens=1)
        scheduler.submit(seeded)
        run_until_idle(scheduler)
    evaluated = [[(item.token, item.logits) for item in batch] for batch in context.batches]
    # Fresh: the slice, then the last token alone; the repeat: the last token alone again.
    assert evaluated == [[(10, False), (11, False)], [(12, True)], [(12, True)]]
