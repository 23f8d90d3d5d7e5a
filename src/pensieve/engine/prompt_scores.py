"""Token ids and their measured log-probabilities as the client's TokenLogprob entries (server process).

Generated tokens arrive as TokenEvents; a scoring job's prompt tokens as PromptEvents (`echo` with
`logprobs` on /v1/completions). A token's text is its bytes decoded (a character split across tokens
shows as U+FFFD in each), so `token` and `bytes` always agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from pensieve.engine.llamacpp.vocab import LlamaVocab
from pensieve.engine.worker_protocol import PromptEvent, TokenEvent
from pensieve.engine_api import TokenLogprob


def token_piece(vocab: LlamaVocab, token: int) -> tuple[str, tuple[int, ...]]:
    """A token's text and bytes."""
    raw = vocab.token_bytes(token)
    return raw.decode("utf-8", errors="replace"), tuple(raw)


def token_logprob(vocab: LlamaVocab, token: int, logprob: float, top: Sequence[tuple[int, float]]) -> TokenLogprob:
    """The entry of one token: its text, bytes, log-probability and the likeliest alternatives."""
    text, raw = token_piece(vocab, token)
    alternatives = tuple((*token_piece(vocab, alt), alt_logprob) for alt, alt_logprob in top)
    return TokenLogprob(text, logprob, raw, tuple((t, lp, b) for t, b, lp in alternatives))


def generated_logprob(vocab: LlamaVocab, event: TokenEvent) -> TokenLogprob:
    """The entry of a sampled token."""
    return token_logprob(vocab, event.token, event.logprob or 0.0, event.top)


class PromptScores:
    """Collects a scoring job's PromptEvents into one entry per prompt token, handed out once.

    The first prompt token has nothing before it to be predicted from: its entry has log-probability
    0.0 and no alternatives, and the API shows it as null (`first_unscored` in CompletionLogprobs).
    """

    def __init__(self, vocab: LlamaVocab, prompt: Sequence[int]) -> None:
        self._vocab = vocab
        self._prompt = prompt
        self._entries = [token_logprob(vocab, prompt[0], 0.0, ())]
        self._taken = False

    def add(self, event: PromptEvent) -> None:
        """The scores of the next prompt positions."""
        for logprob, top in event.scores:
            token = self._prompt[len(self._entries)]
            self._entries.append(token_logprob(self._vocab, token, logprob, top))

    def take(self) -> tuple[TokenLogprob, ...]:
        """Every prompt token's entry the first time, nothing after (they go with one chunk only)."""
        if self._taken:
            return ()
        self._taken = True
        return tuple(self._entries)
