"""Turning a token stream into client text: UTF-8 reassembly, stop sequences, logprobs aligned (pure)."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import replace

from pensieve.engine_api import TokenLogprob


class Utf8Assembler:
    """Joins token byte pieces into text, holding back a multi-byte character split across tokens."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        """Text completed by this piece (may be empty while a character is incomplete)."""
        return self._decoder.decode(piece)

    def flush(self) -> str:
        """Whatever is left at the end; an incomplete character becomes U+FFFD."""
        return self._decoder.decode(b"", final=True)


class StopSequenceFilter:
    """Cuts the output at the first stop sequence and never emits a partial match early.

    Text that could be the start of a stop sequence is held back until the next push shows
    whether the sequence completes, so a client never sees text that is later retracted.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Feed new text; return (text safe to emit, whether a stop sequence was reached)."""
        if not self._stops:
            return text, False
        buffer = self._pending + text
        hits = [index for index in (buffer.find(stop) for stop in self._stops) if index >= 0]
        if hits:
            self._pending = ""
            return buffer[: min(hits)], True
        held = self._longest_partial_match(buffer)
        self._pending = buffer[len(buffer) - held :] if held else ""
        return buffer[: len(buffer) - held], False

    def flush(self) -> str:
        """Text held back when generation ends without completing a stop sequence."""
        pending, self._pending = self._pending, ""
        return pending

    def _longest_partial_match(self, buffer: str) -> int:
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class EdgeWhitespaceTrimmer:
    """Drops whitespace at the start and end of a streamed answer without delaying the rest.

    Chat answers from transcript-style prompts start with the space after "Assistant:" and end with
    the newline before the next "User:"; OpenAI's answers have neither. Trailing whitespace is held
    back until non-whitespace follows it, and dropped if the answer ends first.
    """

    def __init__(self) -> None:
        self._started = False
        self._held = ""

    def push(self, text: str) -> str:
        """Text to emit now."""
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        text = self._held + text
        body = text.rstrip()
        self._held = text[len(body) :]
        return body


def _without_leading(text: str, raw: tuple[int, ...], cut: int) -> tuple[str, tuple[int, ...]]:
    """`text` less its first `cut` characters (whitespace), and `raw` less their UTF-8 bytes."""
    return text[cut:], raw[len(text[:cut].encode("utf-8")) :]


def aligned_logprobs(tokens: list[TokenLogprob], text: str, *, first: bool) -> tuple[TokenLogprob, ...]:
    """The tokens behind an emitted piece of text, with the whitespace a chat answer's start loses
    (the trimmer drops it) also dropped from the tokens.

    The rule (OpenAI's contract): a token's `token` is its `bytes` decoded, and the tokens join to the
    answer. So the whitespace is cut from both the text and the bytes of the tokens that carried it, and
    the alternatives at those positions lose the same leading whitespace: ' Hi' with alternative ' Hello'
    becomes 'Hi' with 'Hello', as the answer would have started with either.
    """
    if not first or not tokens:
        return tuple(tokens)
    joined = "".join(token.token for token in tokens)
    extra = len(joined) - len(joined.lstrip())
    if not extra or joined.lstrip() != text.lstrip() or text[:1].isspace():
        return tuple(tokens)
    aligned = []
    for token in tokens:
        cut = min(extra, len(token.token) - len(token.token.lstrip()))
        extra -= cut
        if not cut:
            aligned.append(token)
            continue
        top = []
        for alt, logprob, raw in token.top:
            alt_text, alt_raw = _without_leading(alt, raw, min(cut, len(alt) - len(alt.lstrip())))
            top.append((alt_text, logprob, alt_raw))
        own_text, own_raw = _without_leading(token.token, token.bytes, cut)
        aligned.append(replace(token, token=own_text, bytes=own_raw, top=tuple(top)))
    return tuple(aligned)


class ConfidenceWindow:
    """The log-probabilities the burst controller judges an answer by: its first N tokens that carry text.

    Whitespace-only tokens (the space before a number, a newline) are near-certain and say nothing about
    whether the answer is right, so up to `MAX_BLANK` of them are skipped (the routing bench: the minimum
    over the first 2 tokens with text separates right from wrong answers with AUC 0.85, over the first 2
    tokens of any kind 0.76). The worker measures `measured_tokens(n)` first tokens, enough to find n.
    """

    MAX_BLANK = 4

    def __init__(self, wanted: int) -> None:
        self._wanted = wanted
        self._judged = self._skipped = 0
        self._pending: list[float] = []

    @classmethod
    def measured_tokens(cls, wanted: int) -> int:
        """How many first tokens the worker must measure to find `wanted` tokens with text (0 for none)."""
        return wanted + cls.MAX_BLANK if wanted else 0

    def push(self, token: bytes, logprob: float | None) -> None:
        """One sampled token and its measured log-probability (None when the worker did not measure it)."""
        if logprob is None or self._judged >= self._wanted:
            return
        if not token.strip() and self._skipped < self.MAX_BLANK:
            self._skipped += 1
            return
        self._judged += 1
        self._pending.append(logprob)

    def take(self) -> tuple[float, ...]:
        """The judged log-probabilities not handed on yet."""
        taken, self._pending = tuple(self._pending), []
        return taken
