"""BM25 (bm25s) over one file's chunks: built once per file, queried by the chat path and the search route.

Each file has its own index, built when the file is uploaded (or, for a persistent store, from the stored
text at start-up), so an upload never re-indexes the other files. Scores of different files use each
file's own term statistics; for the few files a request names that ranks well enough, and is what keeps
adding a file cheap (figures: bench/README.md#file-retrieval).
"""

from __future__ import annotations

from dataclasses import dataclass

import bm25s
import numpy as np

from pensieve.files.chunks import Chunk, chunk_text


def light_stem(word: str) -> str:
    """English plurals folded to their singular ("herons" -> "heron", "cities" -> "city"): enough for a
    question in the plural to find a passage in the singular, without a stemming library."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _stem_words(words: list[str]) -> list[str]:
    """`light_stem` over a list (bm25s.tokenize hands its stemmer every distinct word at once)."""
    return [light_stem(word) for word in words]


def _tokens(texts: list[str]) -> list[list[str]]:
    tokenized: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en", stemmer=_stem_words, return_ids=False, show_progress=False
    )
    return tokenized


@dataclass
class FileIndex:
    """One file's chunks and their BM25 index (None when the file holds no text)."""

    chunks: list[Chunk]
    retriever: bm25s.BM25 | None

    @classmethod
    def build(cls, text: str, *, paged: bool) -> FileIndex:
        """Chunk `text` and index the chunks."""
        chunks = chunk_text(text, paged=paged)
        if not chunks:
            return cls(chunks, None)
        retriever = bm25s.BM25()
        tokens = bm25s.tokenize([c.text for c in chunks], stopwords="en", stemmer=_stem_words, show_progress=False)
        retriever.index(tokens, show_progress=False)
        return cls(chunks, retriever)

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every chunk for `query` (zeros when no query word is in this file)."""
        if self.retriever is None:
            return np.zeros(0)
        words = _tokens([query])[0]
        known = [word for word in words if word in self.retriever.vocab_dict]
        if not known:
            return np.zeros(len(self.chunks))
        return np.asarray(self.retriever.get_scores(known), dtype=float)

    @property
    def nbytes(self) -> int:
        """Memory held by the index's arrays and the chunk texts (an estimate, for the bench and /api/files)."""
        total = sum(len(chunk.text) for chunk in self.chunks)
        if self.retriever is not None:
            total += sum(value.nbytes for value in self.retriever.scores.values() if isinstance(value, np.ndarray))
            total += sum(len(word) + 8 for word in self.retriever.vocab_dict)
        return total
