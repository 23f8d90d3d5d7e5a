"""The text of an accepted file, with its positions: pages for PDFs, lines for everything else.

Uploaded documents are hostile until proven otherwise, so every reader is bounded:

- PDF (pypdf): at most `max_pdf_pages` pages; each stream may inflate to `PDF_STREAM_MAX_BYTES` at most and
  one document's decoding work is capped (pypdf's own limits, set per call through its configuration
  context, so nothing global changes): a decompression bomb stops pypdf with LimitReachedError and the
  file is refused with 415. Pages are joined with a form feed, so the stored text keeps page boundaries.
- DOCX (python-docx): the ZIP's declared uncompressed total and entry count are checked first, so a zip
  bomb is refused before anything is inflated (Python's zipfile never inflates an entry past its declared
  size, so the declaration cannot lie upwards).
- Everything: at most `max_chars` characters are kept; the record says when text was cut, and why.

Extraction runs in a worker thread (FileStore calls it through asyncio.to_thread), never on the event loop.
A child process with a hard timeout was considered: with these caps pypdf's work is bounded by the caps
rather than by time, and a spawned interpreter would add about a second to every upload, so it was not
worth it yet (docs/api.md#files says so).
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass, field

import docx
import pypdf
from docx.table import Table
from pypdf.errors import LimitReachedError, PdfReadError, PyPdfError

from pensieve.errors import UnsupportedFileTypeError
from pensieve.files.detect import Detected
from pensieve.files.html_text import html_to_text

# One PDF stream (a page's content, an image) may inflate to this much; real pages are far smaller.
PDF_STREAM_MAX_BYTES = 32_000_000
# All the decoding one PDF may cause, summed over its streams.
PDF_DECODING_WORK_MAX = 200_000_000
# A DOCX (a ZIP) may declare this much uncompressed content and this many entries at most.
DOCX_MAX_UNCOMPRESSED = 128 * 1024 * 1024
DOCX_MAX_ENTRIES = 5000
PAGE_BREAK = "\f"

# pypdf logs every oddity of a damaged file as a warning; a hostile upload must not flood the server log.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Extracted:
    """The text of one file; for a PDF, its pages joined by form feeds (PAGE_BREAK)."""

    text: str
    pages: int | None = None  # pages read (PDF only)
    total_pages: int | None = None  # pages in the document (PDF only)
    notes: list[str] = field(default_factory=list)  # what was cut, and why

    @property
    def truncated(self) -> bool:
        """Whether part of the document was left out."""
        return bool(self.notes)


def extract(data: bytes, detected: Detected, *, max_chars: int, max_pdf_pages: int) -> Extracted:
    """The text of `data` (of `detected` kind), within the caps; 415 when the document cannot be read."""
    if detected.kind == "pdf":
        result = _pdf(data, max_pdf_pages, max_chars)
    elif detected.kind == "docx":
        result = Extracted(_docx(data))
    elif detected.kind == "html":
        result = Extracted(html_to_text(detected.text or ""))
    else:
        result = Extracted((detected.text or "").replace("\r\n", "\n"))
    return _capped(result, max_chars)


def _capped(result: Extracted, max_chars: int) -> Extracted:
    if len(result.text) <= max_chars:
        return result
    kept = result.text[:max_chars]
    note = f"text cut at {max_chars} characters (PENSIEVE_MAX_EXTRACT_CHARS) of {len(result.text)}"
    pages = kept.count(PAGE_BREAK) + 1 if result.pages is not None else None
    return Extracted(kept, pages, result.total_pages, [*result.notes, note])


def _pdf(data: bytes, max_pages: int, max_chars: int) -> Extracted:
    try:
        with pypdf.apply_configuration(
            zlib_maximum_output_length=PDF_STREAM_MAX_BYTES,
            lzw_maximum_output_length=PDF_STREAM_MAX_BYTES,
            run_length_maximum_output_length=PDF_STREAM_MAX_BYTES,
            array_based_stream_maximum_output_length=PDF_STREAM_MAX_BYTES,
            maximum_declared_stream_length=PDF_STREAM_MAX_BYTES,
            stream_decoding_work_maximum_length=PDF_DECODING_WORK_MAX,
        ):
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise UnsupportedFileTypeError("The PDF is encrypted with a password: Pensieve cannot read it.")
            total = len(reader.pages)
            texts: list[str] = []
            length = 0
            for number in range(min(total, max_pages)):
                page = reader.pages[number].extract_text() or ""
                texts.append(page.replace(PAGE_BREAK, " "))
                length += len(page) + 1
                if length > max_chars:  # the rest would be cut anyway: do not inflate it
                    break
    except LimitReachedError as exc:
        raise UnsupportedFileTypeError(
            f"The PDF was refused: reading it would inflate past Pensieve's limits (a decompression bomb?): {exc}"
        ) from exc
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UnsupportedFileTypeError(f"The PDF cannot be read (damaged or unsupported): {exc}") from exc
    # A stop at the text limit is reported by _capped; only the page cap needs its own note.
    notes = [f"read {max_pages} of {total} pages (PENSIEVE_MAX_PDF_PAGES)"] if len(texts) == max_pages < total else []
    return Extracted(PAGE_BREAK.join(texts), len(texts), total, notes)


def check_zip_bomb(data: bytes) -> None:
    """Refuse a ZIP that declares more entries or uncompressed bytes than a document plausibly holds."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UnsupportedFileTypeError(f"The DOCX file is a damaged ZIP archive: {exc}") from exc
    declared = sum(entry.file_size for entry in entries)
    if len(entries) > DOCX_MAX_ENTRIES or declared > DOCX_MAX_UNCOMPRESSED:
        raise UnsupportedFileTypeError(
            f"The DOCX file was refused: it declares {len(entries)} entries and {declared} uncompressed bytes, "
            f"over the limits of {DOCX_MAX_ENTRIES} entries and {DOCX_MAX_UNCOMPRESSED} bytes (a zip bomb?)."
        )


def _docx(data: bytes) -> str:
    """Paragraphs and table rows in document order, one per line."""
    check_zip_bomb(data)
    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                lines.extend("\t".join(cell.text for cell in row.cells) for row in block.rows)
            else:
                lines.append(block.text)
    except UnsupportedFileTypeError:
        raise
    except Exception as exc:  # python-docx and lxml raise many types on damaged input; all mean "unreadable"
        raise UnsupportedFileTypeError(f"The DOCX file cannot be read (damaged or unsupported): {exc}") from exc
    return "\n".join(lines)
