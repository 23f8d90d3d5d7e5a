"""Shared per-text state of the privacy detectors: one text being scanned and the views they share.

`ScanText` holds a text with what several detectors derive from it, each computed on first use: the digit
clusters and the possible IBAN starts (one shared pass over the digits of the text) and a lower-cased copy
with every index unchanged. `cluster_matches` searches a pattern only near those clusters, so prose costs a
single scan. Everything here is pure: no I/O, no clock, no shared mutable state.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator

# A character span [start, end) in one text.
Span = tuple[int, int]

# --- shared per-text state -----------------------------------------------------------------------------

# One pass over the digits of a text finds every place a number-shaped detector needs to look at:
# - clusters: four or more digits joined by at most two separator characters. Phone, card, SSN, NIR, NINO
#   and IPv4 numbers only ever match around one, so prose costs this single scan;
# - IBAN starts: two digits right after two capital letters (the check digits; tried only when no cluster
#   starts there, and a cluster preceded by two capitals is an IBAN start too).
_NUMBERS = re.compile(r"\d(?:(?:[ ().-]{0,2}\d){3,}|(?<=[A-Z]{2}\d)\d)")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_CAPITALS = frozenset(string.ascii_uppercase)


class ScanText:
    """One text being scanned, with the derived views several detectors share, each computed on first use."""

    __slots__ = ("_clusters", "_iban_starts", "_lowered", "fully_lowered", "n", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self._clusters: list[Span] | None = None
        self._iban_starts: list[int] = []
        self._lowered: str | None = None
        self.fully_lowered = True  # after lowered(): False when only ASCII letters could be folded

    def _scan_numbers(self) -> list[Span]:
        if self._clusters is None:
            text = self.text
            clusters: list[Span] = []
            for m in _NUMBERS.finditer(text):
                a, b = m.span()
                if b - a >= 4:
                    clusters.append((a, b))
                if a >= 2 and text[a - 1] in _CAPITALS and text[a - 2] in _CAPITALS:
                    self._iban_starts.append(a - 2)
            self._clusters = clusters
        return self._clusters

    def clusters(self, min_length: int) -> list[Span]:
        """The digit clusters at least `min_length` characters long, in order."""
        return [(a, b) for a, b in self._scan_numbers() if b - a >= min_length]

    def iban_starts(self) -> list[int]:
        """Where an IBAN may start: two capital letters followed by two digits, in order."""
        self._scan_numbers()
        return self._iban_starts

    def lowered(self) -> str:
        """The text lower-cased with every index unchanged (for case-insensitive literal searches)."""
        if self._lowered is None:
            lowered = self.text.lower()
            # str.lower never shrinks a character, so equal lengths mean a one-to-one mapping; a few
            # characters (such as "İ") grow, and then only ASCII letters are folded, which keeps the indices.
            self.fully_lowered = len(lowered) == self.n
            self._lowered = lowered if self.fully_lowered else self.text.translate(_ASCII_LOWER)
        return self._lowered


# A window-searched pattern looks at most this many characters past its match; a match ending closer than
# this to a window cut short of the text's end could have passed a lookahead only because of the cut.
_LOOKAHEAD_SLACK = 3


def cluster_matches(
    pattern: re.Pattern[str],
    t: ScanText,
    clusters: Iterable[Span],
    left: int,
    right: int,
    accept: Callable[[re.Match[str]], Span | None],
) -> Iterator[Span]:
    """Search `pattern` only near the digit clusters: from `left` characters before to `right` after each.

    `accept` validates a match (checksum, digit count) and returns the span to flag or None; after a
    rejected match the search resumes one character later, so a valid match overlapping it is still found.
    """
    text, n = t.text, t.n
    for a, b in clusters:
        pos = max(0, a - left)
        endpos = min(n, b + right)
        limit = n if endpos == n else endpos - _LOOKAHEAD_SLACK
        while True:
            m = pattern.search(text, pos, endpos)
            if m is None or m.end() > limit:
                break
            span = accept(m)
            if span is None:
                pos = m.start() + 1
            else:
                yield span
                pos = m.end()


__all__ = ["ScanText", "Span", "cluster_matches"]
