"""A document's text cut into passages of about 250 tokens, each knowing where it came from.

A PDF's text holds its pages separated by form feeds: its chunks never cross a page, and say which page
they are on. Other text is cut at line boundaries, and each chunk says its line range. Consecutive chunks
overlap by a line or two (about `OVERLAP_CHARS`), so a fact stated across a cut is whole in one of them.
A line longer than a chunk (minified JSON, a paragraph without breaks) is cut inside the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pensieve.files.extract import PAGE_BREAK

# ~4 characters per token: 1000 characters is ~250 tokens, the passage size the retrieval works on.
CHUNK_CHARS = 1000
OVERLAP_CHARS = 150


@dataclass(frozen=True)
class Chunk:
    """One passage: its text, its page (PDF) or None, and its first and last line (1-based, in the page)."""

    text: str
    page: int | None
    line_start: int
    line_end: int

    @property
    def location(self) -> str:
        """Where the passage is, as a reader would cite it: "page 7" or "lines 10-32"."""
        if self.page is not None:
            return f"page {self.page}"
        return (
            f"line {self.line_start}"
            if self.line_start == self.line_end
            else f"lines {self.line_start}-{self.line_end}"
        )


def chunk_text(text: str, *, paged: bool) -> list[Chunk]:
    """The chunks of `text`; `paged` when it is a PDF's pages joined by form feeds."""
    if paged:
        return [chunk for number, page in enumerate(text.split(PAGE_BREAK), 1) for chunk in _chunk_lines(page, number)]
    return list(_chunk_lines(text, None))


def _pieces(text: str) -> Iterator[tuple[int, str]]:
    """(line number, piece) for each line, long lines cut into pieces of at most CHUNK_CHARS."""
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        for start in range(0, len(line), CHUNK_CHARS - OVERLAP_CHARS):
            yield number, line[start : start + CHUNK_CHARS]
            if start + CHUNK_CHARS >= len(line):
                break


def _chunk_lines(text: str, page: int | None) -> Iterator[Chunk]:
    window: list[tuple[int, str]] = []
    size = 0
    for number, piece in _pieces(text):
        if window and size + len(piece) + 1 > CHUNK_CHARS:
            yield _make(window, page)
            window, size = _overlap(window)
        window.append((number, piece))
        size += len(piece) + 1
    if window:
        yield _make(window, page)


def _overlap(window: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], int]:
    """The last pieces of `window` that fit OVERLAP_CHARS: the start of the next chunk."""
    kept: list[tuple[int, str]] = []
    size = 0
    for number, piece in reversed(window):
        if size + len(piece) + 1 > OVERLAP_CHARS:
            break
        kept.insert(0, (number, piece))
        size += len(piece) + 1
    return kept, size


def _make(window: list[tuple[int, str]], page: int | None) -> Chunk:
    return Chunk("\n".join(piece for _, piece in window), page, window[0][0], window[-1][0])
