"""Privacy scanner: run the detectors, the user's patterns and keywords over the texts of a request.

`PrivacyScanner` runs the built-in detectors of `pensieve.privacy.detectors` that a `PrivacyConfig` switches
on, the user's own regular expressions and the user's keywords over every text of a request and returns each
`Finding` (a kind and a character span; never the matched value, so findings are safe to log). It runs on
every request, so it is built to be cheap: every regular expression is compiled once, each detector has a
prefilter (a literal substring test or one shared pass over the digit clusters of the text) so prose costs
little, and every pattern is linear on hostile input (bounded repetitions and boundary lookbehinds, so no
pattern is retried at every position of a long run). Everything here is pure: no I/O, no clock, no shared
mutable state.

User keywords match whole words, case-insensitively: the keyword ``bluebird`` flags "Project Bluebird" but
not "bluebirds"; a phrase such as ``red kite`` matches with any whitespace between its words. User patterns
are compiled exactly as given (write ``(?i)`` for case-insensitivity); each finding's kind is the pattern's
name, and zero-width matches are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pensieve.privacy.detectors import BUILTIN_DETECTORS
from pensieve.privacy.scan_text import ScanText, Span

# --- configuration and scanner -------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivacyConfig:
    """Which built-in detectors run, plus the user's own (name, regex) patterns and private keywords."""

    detectors: frozenset[str] = frozenset(BUILTIN_DETECTORS)
    custom_patterns: tuple[tuple[str, str], ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One piece of private data: its kind and its character span in the `text_index`-th scanned text."""

    kind: str
    text_index: int
    start: int
    end: int


class PrivacyScanner:
    """Finds private data in request texts with the detectors, patterns and keywords of a `PrivacyConfig`."""

    def __init__(self, config: PrivacyConfig) -> None:
        """Compile everything once; raise ValueError naming the culprit for any invalid part of `config`."""
        unknown = set(config.detectors) - set(BUILTIN_DETECTORS)
        if unknown:
            raise ValueError(
                f"unknown privacy detector(s) {', '.join(sorted(unknown))}; known: {', '.join(BUILTIN_DETECTORS)}"
            )
        self.config = config
        # Kept in registry order so findings and timings do not depend on set iteration order.
        self._detectors = [detector for name, detector in BUILTIN_DETECTORS.items() if name in config.detectors]
        self._patterns = [_compile_pattern(name, pattern) for name, pattern in config.custom_patterns]
        self._keywords = _KeywordMatcher(config.keywords)

    def _spans(self, text: str) -> Iterator[tuple[str, int, int]]:
        t = ScanText(text)
        for detector in self._detectors:
            for start, end in detector.finder(t):
                yield detector.name, start, end
        for name, pattern in self._patterns:
            for m in pattern.finditer(text):
                if m.end() > m.start():  # a lookaround-only match flags nothing
                    yield name, m.start(), m.end()
        for start, end in self._keywords.find(t):
            yield "keyword", start, end

    def scan(self, texts: Sequence[str]) -> tuple[Finding, ...]:
        """Every finding in `texts`, sorted by (text_index, start); findings of different kinds may overlap."""
        found: set[Finding] = set()
        for index, text in enumerate(texts):
            if text:
                found.update(Finding(kind, index, start, end) for kind, start, end in self._spans(text))
        return tuple(sorted(found, key=lambda f: (f.text_index, f.start, f.end, f.kind)))

    def is_private(self, texts: Sequence[str]) -> bool:
        """Whether any text holds private data (stops at the first finding)."""
        return any(next(self._spans(text), None) is not None for text in texts if text)


def _compile_pattern(name: str, pattern: str) -> tuple[str, re.Pattern[str]]:
    kind = name.strip()
    if not kind:
        raise ValueError(f"privacy pattern {pattern!r} has an empty name")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"privacy pattern {kind!r}: invalid regular expression {pattern!r}: {exc}") from exc
    if compiled.match("") is not None:
        # It would match between any two characters: every request would count as private.
        raise ValueError(f"privacy pattern {kind!r}: {pattern!r} matches the empty string")
    return kind, compiled


def _fold_for_ascii(text: str) -> str:
    """`text` lower-cased so an ASCII keyword matching it case-insensitively (as `re` does) is a substring.

    Besides the ASCII letters, `re.IGNORECASE` matches exactly four other characters to ASCII letters: the
    Kelvin sign (lower-cases to "k"), "İ" (lower-cases to "i" plus a combining dot), the dotless "ı" and the
    long "ſ"; the last three are folded by hand.
    """
    lowered = text.lower()
    if text.isascii():
        return lowered
    return lowered.replace("i\u0307", "i").replace("\u0131", "i").replace("\u017f", "s")


class _KeywordMatcher:
    """Whole-word, case-insensitive matching of the user's keywords and phrases (one compiled alternation)."""

    def __init__(self, keywords: Sequence[str]) -> None:
        # Longest first: at one position the alternation takes the first alternative that matches.
        phrases = sorted({" ".join(k.split()) for k in keywords if k.strip()}, key=lambda p: (-len(p), p))
        self._pattern: re.Pattern[str] | None = None
        if phrases:
            body = "|".join(r"\s+".join(re.escape(word) for word in phrase.split()) for phrase in phrases)
            self._pattern = re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)
        # Prefilter: a keyword can only match where its first word occurs in the folded text (a fast substring
        # search instead of a case-insensitive regex pass). Only sound for ASCII keywords; others always scan.
        self._needles: tuple[str, ...] | None = (
            tuple(sorted({phrase.split()[0].lower() for phrase in phrases}))
            if all(phrase.isascii() for phrase in phrases)
            else None
        )

    def find(self, t: ScanText) -> Iterator[Span]:
        """The span of every keyword occurrence in the text."""
        if self._pattern is None:
            return
        if self._needles is None:
            yield from (m.span() for m in self._pattern.finditer(t.text))
            return
        lowered = t.lowered()
        if not t.fully_lowered:
            # Characters such as "İ" grew when lower-cased: the folded text's indices differ from the text's,
            # so it can only serve as a yes/no prefilter for a full pass.
            if any(needle in _fold_for_ascii(t.text) for needle in self._needles):
                yield from (m.span() for m in self._pattern.finditer(t.text))
            return
        # Try the pattern only where a first word occurs (a case-insensitive regex pass over the whole text
        # costs far more than a few substring searches). Folding "ı" and "ſ" keeps every index.
        if not t.text.isascii():
            lowered = lowered.replace("\u0131", "i").replace("\u017f", "s")
        starts: set[int] = set()
        for needle in self._needles:
            at = lowered.find(needle)
            while at != -1:
                starts.add(at)
                at = lowered.find(needle, at + 1)
        done_until = 0
        for at in sorted(starts):
            if at >= done_until:
                m = self._pattern.match(t.text, at)
                if m is not None:
                    done_until = m.end()
                    yield m.span()


__all__ = ["Finding", "PrivacyConfig", "PrivacyScanner"]
