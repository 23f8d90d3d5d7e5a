"""The continuous-batching scheduler that runs inside a model's worker process.

Every step builds ONE batch for `llama_decode`: the next token of every generating sequence and as
many prompt tokens of newly admitted requests as the batch has room for (chunked prefill: while others
generate, a long prompt enters in slices so it does not stall their streams). A prompt's last token
goes with its last slice, so its first token is sampled from that very step, except for seeded sampling
(see `slot.seeded`). New requests join at the next step; finished or cancelled sequences free their slot
at once.

KV budget: in the split layout each slot owns a window of cells, so a free slot always has room. In the
unified layout (any sequence may use any cell) a request is admitted only when its prompt plus
max_tokens fits next to what running requests reserved and what idle slots keep cached, so decoding
never runs out of cells mid-way; the same accounting covers both (a split cache is parallel x window).
Idle slots keep the KV of their last request (prompt and answer): a new request takes the idle slot
sharing its longest prefix (same system prompt, the next turn of a conversation) and only its new
suffix is computed. Cached prefixes are dropped least-recently-used first when room is needed. A slot
also keeps the logits its last prompt ended with: the same prompt again (a retry, a regenerate) starts
sampling from them without evaluating anything, and gets what the first request got.

Prompt scoring (`Job.score_prompt`, for `echo` + `logprobs`): the job's prompt positions are decoded with
logits on, at most SCORING_ROWS a step, and each position's log-probability of the next prompt token is
read right after that step's decode (a PromptEvent), so no more than SCORING_ROWS rows of logits ever
exist. A scoring job reuses no cached prefix (a cached position has no logits); with max_tokens 0 it ends
once its prompt is in, without evaluating the last prompt token (nothing is sampled after it).

Speculative decoding (`speculation`): while few sequences generate, a step may also hold a draft of
its next tokens found by prompt lookup, each with logits on. `_verify` samples every row in order with the
sequence's own sampler and keeps the tokens while they match the draft, so the output is what plain
decoding would give (greedy: the same tokens; sampled: the same distribution). The rejected drafts' KV is
dropped at once.

The scheduler is synchronous and owns the BatchContext; the worker loop feeds it commands between steps.
Everything here runs in the worker process; its jobs and events are defined in `worker_protocol`.
"""

from __future__ import annotations

import time
from collections import deque

from pensieve.engine.llamacpp.batch_context import (
    SCORING_ROWS,
    SPECULATIVE_ROWS,
    BatchContext,
    BatchItem,
)
from pensieve.engine.llamacpp.runtime import LlamaDecodeError
from pensieve.engine.slot import Slot, common_prefix, seeded
from pensieve.engine.speculation import MAX_STREAMS, Speculation
from pensieve.engine.worker_protocol import DoneEvent, Event, Finish, Job, Load, PromptEvent, TokenEvent

# Prompt tokens a step may add per prompt waiting for its first token and per sequence generating: a
# short slice of prefill (its time on 2 cores is in bench/README.md), so running streams keep flowing while
# a long prompt enters (see `_prefill_room`).
PREFILL_SLICE_WHILE_GENERATING = 128


class Scheduler:
    """Continuous batching over one BatchContext."""

    def __init__(self, context: BatchContext) -> None:
        self.context = context
        self.slots = [Slot(seq) for seq in range(context.n_parallel)]
        self.waiting: deque[Job] = deque()
        self.eog = context.vocab.eog_tokens
        self.banned = context.vocab.banned_tokens
        # Events made while admitting: a job that could not start ends; a whole cached prompt's first token.
        self._admitted: list[Event] = []
        self._speculations: dict[int, Speculation] = {}  # by sequence; replaced when its request changes
        self.drafted = 0  # draft tokens verified since the worker started, and how many were accepted
        self.accepted = 0

    # --- commands ---------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a request; it joins the batch at the next step that has a slot and KV room for it."""
        self.waiting.append(job)

    def cancel(self, rid: int) -> DoneEvent | None:
        """Stop a request now (client gone or stop sequence seen); its slot is free for the next step."""
        for job in self.waiting:
            if job.rid == rid:
                self.waiting.remove(job)
                return DoneEvent(rid, "cancelled", len(job.prompt), 0, 0)
        for slot in self.slots:
            if slot.job is not None and slot.job.rid == rid:
                return self._finish(slot, "cancelled")
        return None

    @property
    def idle(self) -> bool:
        """Nothing to run and nothing waiting."""
        return not self.waiting and all(slot.job is None for slot in self.slots)

    def load(self) -> Load:
        """(sequences running, requests waiting, KV cells in use or reserved)."""
        running = sum(1 for slot in self.slots if slot.job is not None)
        return running, len(self.waiting), sum(slot.reserved for slot in self.slots)

    def speculated(self) -> tuple[int, int]:
        """(draft tokens verified, of which accepted) since the worker started: /api/ps's acceptance rate."""
        return self.drafted, self.accepted

    # --- admission --------------------------------------------------------------------------------

    def _admit(self) -> None:
        while self.waiting:
            job = self.waiting[0]
            idle = [slot for slot in self.slots if slot.job is None]
            if not idle:
                return
            reusable = job.prompt if job.cache_prompt and job.score_prompt < 0 else []
            slot, common = self._best_slot(idle, reusable, job.cache_partition)
            # All of a cached prompt is reused when the slot saved the logits it ended with; otherwise all
            # but its last token, which is evaluated again for its logits.
            whole = common == len(job.prompt) == slot.saved_for and job.max_tokens > 0 and not seeded(job)
            reuse = common if whole else min(common, len(job.prompt) - 1)
            if not self._make_room(slot, len(job.prompt) + job.max_tokens):
                return
            self.waiting.popleft()
            try:
                self._start(slot, job, reuse)
            except ValueError as exc:  # e.g. a grammar llama.cpp cannot parse
                self._admitted.append(self._finish(slot, "error", f"cannot start: {exc}"))
                continue
            if reuse == len(job.prompt):  # its first token now, from the saved logits; evaluated this step
                self._admitted.extend(self._sample(slot, None))

    def _best_slot(self, idle: list[Slot], prompt: list[int], partition: str) -> tuple[Slot, int]:
        best, best_common = None, 0
        for slot in idle:
            if slot.partition != partition:
                continue  # another caller's prompt: reusing it would tell this caller what it was
            common = common_prefix(slot.cached, prompt)
            if common > best_common:
                best, best_common = slot, common
        if best is None:
            best = min(idle, key=lambda slot: (len(slot.cached) > 0, slot.last_used))
        return best, best_common

    def _make_room(self, chosen: Slot, needed: int) -> bool:
        """Drop other idle slots' caches (least recently used first) until the chosen slot's job fits.

        `needed` is the job's whole reservation (prompt + max_tokens); the chosen slot's own cache
        beyond the reused prefix is dropped when the job starts, so it does not count.
        """
        kv_size = self.context.kv_size
        in_use = sum(slot.reserved for slot in self.slots if slot is not chosen)
        if in_use + needed <= kv_size:
            return True
        for slot in sorted(self.slots, key=lambda s: s.last_used):
            if slot.job is None and slot.cached and slot is not chosen:
                self.context.forget(slot.seq)
                in_use -= len(slot.cached)
                slot.truncate(0)
                if in_use + needed <= kv_size:
                    return True
        return False

    def _start(self, slot: Slot, job: Job, reuse: int) -> None:
        self.context.forget(slot.seq, reuse)
        slot.truncate(reuse)
        slot.partition = job.cache_partition
        slot.job = job
        slot.pending = job.prompt[reuse:-1]
        # Nothing to evaluate: nothing to sample (max_tokens 0: a scoring job), or the whole prompt is cached
        # with the logits it ended with (`_admit` samples from them).
        slot.next_token = job.prompt[-1] if job.max_tokens > 0 and reuse < len(job.prompt) else None
        slot.produced = 0
        slot.reused = reuse
        ban = (*self.banned, *self.eog) if job.forbid_eog_first else self.banned
        ban = (*ban, *job.ban_first)
        slot.sampler = self.context.sampler(job.params, ban=ban, grammar=job.grammar)  # ValueError: bad grammar

    # --- one step ---------------------------------------------------------------------------------

    def step(self) -> list[Event]:
        """Admit, build one batch, decode it, sample; the events of this step."""
        self._admit()
        events: list[Event] = list(self._admitted)
        self._admitted.clear()
        items, sampled, scored = self._build_batch()
        drafts = self._add_drafts(items, sampled)
        if not items:
            return events + self._finish_prompt_only()
        try:
            self.context.decode(items)
        except LlamaDecodeError as exc:
            # The batch is lost: end every request that had tokens in it, keep the others going.
            seqs = {item.seq for item in items}
            failed = [self._finish(slot, "error", str(exc)) for slot in self.slots if slot.seq in seqs and slot.job]
            return events + failed
        for item in items:
            self.slots[item.seq].cached.append(item.token)
        for slot, first, count in scored:
            events.append(self._score(slot, first, count))
        for slot, index in sampled:
            draft = drafts.get(slot.seq)
            events.extend(self._verify(slot, index, *draft) if draft else self._sample(slot, index))
        return events + self._finish_prompt_only()

    def _finish_prompt_only(self) -> list[Event]:
        """End the jobs with nothing to sample (max_tokens 0) whose prompt is all in."""
        return [
            self._finish(slot, "length")
            for slot in self.slots
            if slot.job is not None and not slot.pending and slot.next_token is None
        ]

    def _score(self, slot: Slot, first: int, count: int) -> PromptEvent:
        """The scores of the `count` prompt positions at batch entries `first`..: each position's logits
        predict the prompt's next token, read now (the next decode overwrites them)."""
        job = slot.job
        assert job is not None
        start = len(slot.cached) - count  # the slice's first position (the step appended it to the cache)
        scores = []
        for offset in range(count):
            logprob, top = self.context.logprobs(first + offset, job.prompt[start + offset + 1], job.score_prompt)
            scores.append((logprob, tuple(top)))
        return PromptEvent(job.rid, tuple(scores))

    def _build_batch(self) -> tuple[list[BatchItem], list[tuple[Slot, int]], list[tuple[Slot, int, int]]]:
        items: list[BatchItem] = []
        sampled: list[tuple[Slot, int]] = []
        scored: list[tuple[Slot, int, int]] = []  # (slot, first batch entry, positions) of scored slices
        scoring_rows = SCORING_ROWS
        generating = 0
        # First the sequences that sample this step: one token each (a generated or a last prompt token).
        for slot in self.slots:
            if slot.job is not None and not slot.pending and slot.next_token is not None:
                sampled.append((slot, len(items)))
                items.append(BatchItem(slot.next_token, len(slot.cached), slot.seq, True))
                generating += slot.produced > 0
        room = self._prefill_room(self.context.n_batch - len(items), generating)
        # Then prompt slices, oldest request first (slots admitted earlier have lower reuse of room).
        for slot in self.slots:
            if room <= 0:
                break
            if slot.job is None or not slot.pending:
                continue
            scoring = slot.job.score_prompt >= 0
            size = min(room, scoring_rows) if scoring else room
            if size <= 0:
                continue
            piece, slot.pending = slot.pending[:size], slot.pending[size:]
            start = len(slot.cached)
            if scoring:
                scored.append((slot, len(items), len(piece)))
                scoring_rows -= len(piece)
            items.extend(BatchItem(token, start + offset, slot.seq, scoring) for offset, token in enumerate(piece))
            room -= len(piece)
            if not slot.pending and slot.next_token is not None and room > 0 and not scoring and not seeded(slot.job):
                # The prompt's last token joins its last slice: a step less before the first token.
                sampled.append((slot, len(items)))
                items.append(BatchItem(slot.next_token, start + len(piece), slot.seq, True))
                room -= 1
        return items, sampled, scored

    def _prefill_room(self, room: int, generating: int) -> int:
        """Prompt tokens this step may take, of the batch's `room`, while `generating` sequences stream.

        A step's length is every running stream's stall, while prompts wait for their first token: a
        slice of PREFILL_SLICE_WHILE_GENERATING per waiting prompt per generating stream. One long prompt
        beside streams enters in short slices; a burst of requests, of which the first admitted is
        already generating, fills the batch as on an idle server, and gets its first tokens sooner.
        """
        if not generating:
            return room
        prefilling = sum(1 for slot in self.slots if slot.job is not None and slot.pending)
        return min(room, PREFILL_SLICE_WHILE_GENERATING * max(1, prefilling // generating))

    # --- speculative decoding ----------------------------------------------------------------------

    def _add_drafts(self, items: list[BatchItem], sampled: list[tuple[Slot, int]]) -> dict[int, tuple[list[int], int]]:
        """Append the drafts of the sequences that speculate this step to the batch (logits on each).

        Only when the step holds nothing but a few sampling sequences (MAX_STREAMS): a prompt slice or many
        streams make the step heavy enough that extra logits rows cost more than they save. Returns, per sequence, its
        draft and the batch entry of the draft's first token.
        """
        drafts: dict[int, tuple[list[int], int]] = {}
        if not sampled or len(sampled) > MAX_STREAMS or len(items) != len(sampled):
            return drafts
        rows = len(items)
        for slot, _ in sampled:
            job = slot.job
            assert job is not None and slot.next_token is not None
            if not job.speculative:
                continue
            speculation = self._speculations.get(slot.seq)
            if speculation is None or speculation.rid != job.rid:
                speculation = self._speculations[slot.seq] = Speculation(job.rid)
            # A draft longer than the tokens the request may still emit, its KV reservation or the window
            # allows would be wasted (or run out of cells).
            limit = min(
                job.max_tokens - slot.produced - 1,
                self.context.window - len(slot.cached) - 2,
                self.context.n_batch - len(items),
                SPECULATIVE_ROWS - (len(items) - rows),
            )
            # The history is the cache plus the token about to be evaluated: appended for the lookup and
            # taken off again rather than copying a long list every step.
            slot.cached.append(slot.next_token)
            try:
                draft = speculation.propose(slot.cached, len(items), limit)
            finally:
                slot.cached.pop()
            if draft:
                start = len(slot.cached) + 1
                drafts[slot.seq] = (draft, len(items))
                items.extend(BatchItem(token, start + offset, slot.seq, True) for offset, token in enumerate(draft))
        return drafts

    def _verify(self, slot: Slot, index: int, draft: list[int], first: int) -> list[Event]:
        """Sample the sequence's rows in order (its next token's, then each draft token's) while the
        sampled token equals the draft's next one; the KV of the drafts not kept is dropped.

        Every emitted token is drawn by the sequence's own sampler from the logits that plain decoding
        would have used, so greedy output is unchanged and sampled output keeps its distribution (for a
        fixed draft this is speculative sampling's accept-with-probability-p(d) rule).
        """
        slot.truncate(len(slot.cached) - len(draft))  # the step appended the drafts as if all were kept
        events: list[Event] = []
        accepted = 0
        for offset, row in enumerate((index, *range(first, first + len(draft)))):
            events.extend(self._sample(slot, row))
            if slot.job is None or offset == len(draft) or slot.next_token != draft[offset]:
                break
            slot.cached.append(draft[offset])  # its KV, computed this step, is the sequence's own now
            accepted += 1
        if accepted < len(draft):
            self.context.forget(slot.seq, len(slot.cached))
        self.drafted += len(draft)
        self.accepted += accepted
        speculation = self._speculations.get(slot.seq)
        if speculation is not None:
            speculation.record(len(draft), accepted)
        return events

    def _sample(self, slot: Slot, index: int | None) -> list[Event]:
        """Sample the slot's next token from batch entry `index`, or (None) from its saved logits."""
        job, sampler = slot.job, slot.sampler
        assert job is not None and sampler is not None
        saved = slot.saved_logits if index is None else None
        if slot.produced == 0 and index is not None:
            slot.saved_logits, slot.saved_for = self.context.save_logits(index), len(slot.cached)
        token = self.context.sample(sampler, index, saved=saved)
        if slot.produced == 0 and job.forbid_eog_first:
            # The EOG ban holds for the first token only: continue with the everyday chain (the grammar,
            # which has already seen the token, moves over to it).
            grammar, sampler.grammar = sampler.grammar, None
            sampler.free()
            slot.sampler = self.context.sampler(job.params, ban=self.banned)
            self.context.accept(slot.sampler, token)
            slot.sampler.grammar = grammar
        if token in self.eog:
            return [self._finish(slot, "stop")]
        cached = slot.reused if slot.produced == 0 else 0
        event = TokenEvent(job.rid, token, cached_tokens=cached)
        if job.top_logprobs >= 0 or slot.produced < job.confidence_tokens:
            logprob, top = self.context.logprobs(index, token, max(job.top_logprobs, 0), saved=saved)
            event = TokenEvent(job.rid, token, logprob, tuple(top), cached)
        slot.produced += 1
        slot.next_token = token
        if slot.produced >= job.max_tokens or len(slot.cached) + 1 >= self.context.window:
            return [event, self._finish(slot, "length")]
        return [event]

    def _finish(self, slot: Slot, finish: Finish, error: str | None = None) -> DoneEvent:
        job = slot.job
        assert job is not None
        if slot.sampler is not None:
            slot.sampler.free()
        if finish == "error":
            self.context.forget(slot.seq)
            slot.truncate(0)
        done = DoneEvent(job.rid, finish, len(job.prompt), slot.produced, slot.reused, error)
        slot.job, slot.sampler, slot.next_token, slot.pending = None, None, None, []
        slot.last_used = time.monotonic()
        return done
