"""Test documents built from scratch: PDFs with real text (pypdf cannot write text), DOCX, bombs, binaries.

`make_pdf` writes a minimal PDF by hand: one Helvetica text content stream per page and an exact xref
table, so pypdf reads it back as text page by page. The hostile ones (`bomb_pdf`, `zip_bomb_docx`) are
small on disk and inflate to hundreds of megabytes.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import docx


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _content(lines: list[str]) -> bytes:
    ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
    for line in lines:
        ops.append(f"({_escape(line)}) Tj T*")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def _assemble(objects: list[bytes]) -> bytes:
    """A PDF of `objects` (object i + 1 is objects[i]; 1 is the catalog) with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _pdf_with_streams(streams: list[bytes], *, filters: str = "") -> bytes:
    """One page per content stream (already encoded with `filters`, e.g. "/Filter /FlateDecode")."""
    count = len(streams)
    font = 3 + 2 * count
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()]
    for i, stream in enumerate(streams):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} {filters} >>\nstream\n".encode() + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    return _assemble(objects)


def make_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose page i shows the lines of pages[i] (Latin-1 text)."""
    return _pdf_with_streams([_content(lines) for lines in pages])


def bomb_pdf(inflated_mb: int = 300) -> bytes:
    """A one-page PDF whose FlateDecode content stream inflates to `inflated_mb` MB (a few hundred KB on disk)."""
    compressor = zlib.compressobj(9)
    block = b" " * (1024 * 1024)
    stream = b"".join(compressor.compress(block) for _ in range(inflated_mb)) + compressor.flush()
    return _pdf_with_streams([stream], filters="/Filter /FlateDecode")


def make_docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    """A DOCX with these paragraphs and, after them, an optional table."""
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_bomb_docx(inflated_mb: int = 300) -> bytes:
    """A real DOCX plus one extra entry of `inflated_mb` MB of zeros (a few hundred KB compressed)."""
    source = zipfile.ZipFile(io.BytesIO(make_docx(["An innocent looking document."])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            archive.writestr(item, source.read(item))
        with archive.open("word/media/padding.bin", "w", force_zip64=True) as entry:
            block = bytes(1024 * 1024)
            for _ in range(inflated_mb):
                entry.write(block)
    return out.getvalue()


def plain_zip() -> bytes:
    """A ZIP archive holding a text file: an archive, but not a Word document."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return out.getvalue()


def elf_executable() -> bytes:
    """The first bytes of a 64-bit Linux ELF executable (enough for any type check)."""
    header = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + struct.pack("<HHI", 2, 0x3E, 1)
    return header + bytes(4096)


def png_image() -> bytes:
    """A 1x1 PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


SAMPLES: dict[str, bytes] = {
    "text": b"Dear team,\nthe meeting moves to Thursday at ten.\nRegards, Ana\n",
    "markdown": b"# Release notes\n\n- faster uploads\n- **bold** claims\n\nSee [the docs](https://example.org).\n",
    "csv": b"name,city,age\nAna,Lisbon,34\nBo,Oslo,41\nCy,Lima,29\n",
    "json": b'{"name": "pensieve", "tags": ["llm", "local"], "version": 3}\n',
    "html": b"<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style></head>"
    b"<body><h1>Heading</h1><p>Visible paragraph.</p><script>var secret = 1;</script></body></html>",
    "code": b"import os\nimport sys\n\n\ndef main() -> int:\n    print(os.getcwd())\n    return 0\n\n\n"
    b"class Runner:\n    pass\n",
}
