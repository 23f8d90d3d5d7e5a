"""What an uploaded file is, decided from its bytes only: the name a client sends is never trusted.

Binary formats are recognised by their signatures (PDF, and DOCX: a ZIP holding `word/document.xml`);
everything else must be text (UTF-8 with or without a BOM, or UTF-16 with a BOM) and is then sniffed
for JSON, HTML, CSV, Markdown or source code, plain text otherwise. Executables, other archives, images
and unknown binary data are refused with 415 `unsupported_file_type`, naming what was found (puremagic
names the binary formats Pensieve does not check for itself).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from typing import Literal

import puremagic

from pensieve.errors import UnsupportedFileTypeError

Kind = Literal["text", "markdown", "pdf", "docx", "csv", "json", "html", "code"]

MEDIA_TYPES: dict[str, str] = {
    "text": "text/plain; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "code": "text/plain; charset=utf-8",
}

# A few undecodable bytes (a stray Latin-1 character in a UTF-8 file) are tolerated; more means binary.
MAX_BAD_BYTES_RATIO = 0.01
# Text is sniffed from its beginning: enough lines for CSV and Markdown, cheap on a 20 MB file.
SNIFF_CHARS = 16_384

_EXECUTABLES: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows (PE/DOS) executable"),
    (b"\xfe\xed\xfa\xce", "a Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O universal binary (or Java class)"),
    (b"\x00asm", "a WebAssembly module"),
)


@dataclass(frozen=True)
class Detected:
    """The kind of an accepted file and, for text kinds, its decoded text."""

    kind: Kind
    text: str | None = None  # None for PDF and DOCX (extract.py reads those)

    @property
    def media_type(self) -> str:
        """The content type the original bytes are served with."""
        return MEDIA_TYPES[self.kind]


def detect(data: bytes) -> Detected:
    """The kind of `data`; UnsupportedFileTypeError (415) naming what was found when it is not accepted."""
    if not data:
        raise UnsupportedFileTypeError("The file is empty: there is nothing to read in it.")
    if b"%PDF-" in data[:1024]:  # the PDF header may follow some junk, as readers allow
        return Detected("pdf")
    for magic, what in _EXECUTABLES:
        if data.startswith(magic):
            raise _refuse(what)
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return _zip_kind(data)
    text = decode_text(data)
    if text is None:
        raise _refuse(_binary_name(data))
    return Detected(sniff_text(text), text)


def _refuse(what: str) -> UnsupportedFileTypeError:
    return UnsupportedFileTypeError(
        f"The file's content is {what}, which Pensieve does not accept (the file name is not looked at). "
        "Accepted: plain text, Markdown, PDF, DOCX, CSV, JSON, HTML and source code."
    )


def _zip_kind(data: bytes) -> Detected:
    """DOCX when the ZIP holds a Word document; any other archive is refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _refuse(f"a damaged ZIP archive ({exc})") from exc
    if "word/document.xml" in names and "[Content_Types].xml" in names:
        return Detected("docx")
    if "xl/workbook.xml" in names:
        raise _refuse("an Excel workbook (XLSX)")
    if "ppt/presentation.xml" in names:
        raise _refuse("a PowerPoint presentation (PPTX)")
    raise _refuse("a ZIP archive that is not a Word document")


def _binary_name(data: bytes) -> str:
    """What puremagic calls this binary data, or a generic name."""
    try:
        matches = puremagic.magic_string(data[:8192])
    except (puremagic.PureError, ValueError):
        matches = []
    if matches and matches[0].confidence >= 0.4:
        best = matches[0]
        return f"{best.name} ({best.mime_type or best.extension or 'binary'})"
    return "binary data that is not UTF-8 text"


def decode_text(data: bytes) -> str | None:
    """`data` as text (UTF-8, UTF-8 with BOM, UTF-16 with BOM), or None when it is binary."""
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:  # UTF-8 text never holds NUL bytes; binaries almost always do
        return None
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
    if bad > max(2, MAX_BAD_BYTES_RATIO * len(text)):
        return None
    controls = sum(1 for c in text[:SNIFF_CHARS] if ord(c) < 32 and c not in "\t\n\r\f\v\x1b")
    if controls > MAX_BAD_BYTES_RATIO * min(len(text), SNIFF_CHARS) + 2:
        return None
    return text


_HTML = re.compile(r"^\s*(<!--.*?-->\s*)*(<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.I | re.S)
_HTML_TAGS = re.compile(r"</(div|p|span|table|body|html|head|script|a|ul|li|h[1-6])>", re.I)
_MARKDOWN = re.compile(r"^(#{1,6} \S|```|[-*+] \S|\d+\. \S|> \S|\|.*\|\s*$)|\[[^\]]+\]\([^)]+\)|\*\*\S", re.M)
_CODE = re.compile(
    r"^\s*(#!\s*/|#include\s*[<\"]|(def|class)\s+\w+.*:\s*$|(from\s+[\w.]+\s+)?import\s+[\w.]+|"
    r"(public|private|static)\s+\w|(fn|func|function)\s+\w+\s*\(|(const|let|var)\s+\w+\s*=|package\s+\w+)",
    re.M,
)


def sniff_text(text: str) -> Kind:
    """The kind of a text: JSON, HTML, CSV, Markdown, code or plain text."""
    head = text[:SNIFF_CHARS]
    stripped = text.strip()
    if stripped[:1] in "{[" and _is_json(stripped):
        return "json"
    if _HTML.match(head) or len(_HTML_TAGS.findall(head)) >= 3:
        return "html"
    if _is_csv(head):
        return "csv"
    lines = [line for line in head.splitlines() if line.strip()]
    code_lines = sum(1 for line in lines if _CODE.match(line)) + sum(1 for line in lines if line.rstrip().endswith(";"))
    if lines and code_lines >= max(2, len(lines) // 8):
        return "code"
    if len(_MARKDOWN.findall(head)) >= 2:
        return "markdown"
    return "text"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _is_csv(head: str) -> bool:
    """At least two lines that split into the same number (two or more) of fields on one delimiter."""
    lines = [line for line in head.splitlines()[:20] if line.strip()]
    if len(head) >= SNIFF_CHARS and len(lines) > 2:
        lines = lines[:-1]  # the last line may be cut by the sniffing window
    if len(lines) < 2:
        return False
    for delimiter in (",", ";", "\t", "|"):
        counts = {line.count(delimiter) for line in lines}
        if len(counts) == 1 and counts.pop() >= 1 and not any(line.count(" ") > 12 for line in lines[:3]):
            return True
    return False
