"""Redaction: replace each private-data finding with a `[REDACTED:KIND]` marker before a cloud call.

Pure and I/O-free. The marker names the kind (`[REDACTED:EMAIL]`, `[REDACTED:CREDIT_CARD]`,
`[REDACTED:KEYWORD]`, or a user pattern's name upper-cased) so the cloud model still knows what stood there.
"""

from __future__ import annotations

from collections.abc import Sequence

from pensieve.privacy.scanner import Finding


def redaction_marker(kind: str) -> str:
    """The text that replaces a finding of `kind`."""
    return f"[REDACTED:{kind.upper()}]"


def _merged_spans(findings: Sequence[Finding], length: int) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) spans covering every finding, in text order.

    Overlapping findings become one span, named after the finding that starts first (the longest of those):
    masking the union guarantees no fragment of either value survives between two markers.
    """
    ordered = sorted(findings, key=lambda f: (f.start, -f.end, f.kind))
    merged: list[tuple[int, int, str]] = []
    for finding in ordered:
        # Clamp, so a finding from a longer text can never make slicing misbehave.
        start, end = max(0, min(finding.start, length)), max(0, min(finding.end, length))
        if end <= start:
            continue
        if merged and start < merged[-1][1]:
            last_start, last_end, kind = merged[-1]
            merged[-1] = (last_start, max(last_end, end), kind)
        else:
            merged.append((start, end, finding.kind))
    return merged


def redact_texts(texts: Sequence[str], findings: Sequence[Finding]) -> list[str]:
    """Each finding's span replaced by [REDACTED:KIND] (KIND = kind upper-cased, e.g. [REDACTED:EMAIL]).

    Overlapping spans are merged (the merged span takes the kind of the earliest-starting, longest
    finding); texts without findings come back unchanged, and findings whose `text_index` is out of range
    are ignored.
    """
    by_text: dict[int, list[Finding]] = {}
    for finding in findings:
        if 0 <= finding.text_index < len(texts):
            by_text.setdefault(finding.text_index, []).append(finding)
    redacted = list(texts)
    for index, text_findings in by_text.items():
        text = texts[index]
        pieces: list[str] = []
        position = 0
        for start, end, kind in _merged_spans(text_findings, len(text)):
            pieces.append(text[position:start])
            pieces.append(redaction_marker(kind))
            position = end
        pieces.append(text[position:])
        redacted[index] = "".join(pieces)
    return redacted


__all__ = ["redact_texts", "redaction_marker"]
