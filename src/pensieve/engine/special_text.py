"""Keeping chat content from creating turns: special-token texts in a message are broken before tokenizing.

A chat prompt is rendered with the model's turn markers as text (`<start_of_turn>`, `<|im_start|>` ...) and
tokenized with special-token parsing on, so that the markers become control tokens. The same parsing would
turn a marker typed inside a message, or inside an uploaded document, into a control token too: a user
could close their turn and write the assistant's. So every special-token text inside message content gets
a zero-width space after its first character: the model reads the same characters as plain text, and only
the template's own markers are control tokens. Content without such texts is left exactly as it was (its
tokens, and so the prompt cache and greedy answers, do not change).

Only bracketed special texts are guarded (`<...>`, `[...]`: every turn, role and control marker of the
common chat formats); some vocabularies also mark runs of spaces or newlines as special, which are text.
Pure and fast: one bounded regular expression finds the candidates, a set lookup decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Bounded, and unable to start inside a candidate: linear on any input.
_CANDIDATE = re.compile(r"<[^<>\n]{1,62}>|\[[^\[\]\n]{1,62}\]")
BREAK = "\u200b"  # ZERO WIDTH SPACE


class SpecialTextGuard:
    """Breaks a model's special-token texts found in untrusted text."""

    def __init__(self, special_texts: Iterable[str]) -> None:
        self.texts = frozenset(text for text in special_texts if _CANDIDATE.fullmatch(text))

    def neutralise(self, text: str) -> str:
        """`text` with every special-token text in it broken by a zero-width space (else unchanged)."""
        if not self.texts or ("<" not in text and "[" not in text):
            return text
        return _CANDIDATE.sub(self._break, text)

    def _break(self, match: re.Match[str]) -> str:
        found = match.group(0)
        return found[0] + BREAK + found[1:] if found in self.texts else found
