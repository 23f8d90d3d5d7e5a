"""File type detection from the bytes, and text extraction with its caps (PDF pages, DOCX, HTML, bombs)."""

from __future__ import annotations

import pytest

from pensieve.errors import UnsupportedFileTypeError
from pensieve.files.detect import detect
from pensieve.files.extract import PAGE_BREAK, extract
from support.documents import (
    SAMPLES,
    bomb_pdf,
    elf_executable,
    make_docx,
    make_pdf,
    plain_zip,
    png_image,
    zip_bomb_docx,
)

CAPS = {"max_chars": 2_000_000, "max_pdf_pages": 500}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_text_kind_is_detected_from_its_bytes(kind: str) -> None:
    assert detect(SAMPLES[kind]).kind == kind


def test_pdf_and_docx_are_detected_from_their_bytes() -> None:
    assert detect(make_pdf([["hello"]])).kind == "pdf"
    assert detect(make_docx(["hello"])).kind == "docx"


def test_text_with_a_bom_and_utf16_is_text() -> None:
    assert detect(b"\xef\xbb\xbfplain words here").text == "plain words here"
    assert detect("caf\u00e9 au lait".encode("utf-16")).text == "caf\u00e9 au lait"


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (elf_executable(), "ELF executable"),
        (b"MZ\x90\x00" + bytes(200), "Windows"),
        (plain_zip(), "ZIP archive"),
        (png_image(), "PNG"),
        (bytes(range(256)) * 8, "binary"),
        (b"", "empty"),
    ],
)
def test_refused_content_is_named(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedFileTypeError) as caught:
        detect(data)
    assert caught.value.status_code == 415
    assert caught.value.code == "unsupported_file_type"
    assert named.lower() in caught.value.message.lower()


def test_a_few_bad_bytes_are_tolerated_but_not_many() -> None:
    assert detect(b"Caf\xe9 ol\xe9 " + b"plain text " * 100).kind == "text"
    with pytest.raises(UnsupportedFileTypeError):
        detect(b"\xe9\xff\xfe" * 400)


def test_pdf_text_is_read_page_by_page() -> None:
    data = make_pdf([["first page words"], ["second page (with parentheses)"], ["third"]])
    result = extract(data, detect(data), **CAPS)
    pages = result.text.split(PAGE_BREAK)
    assert result.pages == result.total_pages == 3
    assert "first page words" in pages[0]
    assert "second page (with parentheses)" in pages[1]
    assert not result.truncated


def test_pdf_page_cap_is_reported() -> None:
    data = make_pdf([[f"page {n}"] for n in range(1, 6)])
    result = extract(data, detect(data), max_chars=2_000_000, max_pdf_pages=2)
    assert result.pages == 2 and result.total_pages == 5
    assert result.truncated and "2 of 5 pages" in result.notes[0]


def test_text_cap_is_reported() -> None:
    data = b"word " * 1000
    result = extract(data, detect(data), max_chars=1000, max_pdf_pages=10)
    assert len(result.text) == 1000
    assert "1000 characters" in result.notes[0]


def test_pdf_decompression_bomb_is_refused() -> None:
    data = bomb_pdf(300)
    assert len(data) < 2_000_000
    with pytest.raises(UnsupportedFileTypeError) as caught:
        extract(data, detect(data), **CAPS)
    assert "inflate" in caught.value.message


def test_docx_paragraphs_and_tables() -> None:
    data = make_docx(["Alpha paragraph.", "Beta paragraph."], table=[["k", "v"], ["colour", "blue"]])
    text = extract(data, detect(data), **CAPS).text
    assert text.splitlines()[:2] == ["Alpha paragraph.", "Beta paragraph."]
    assert "colour\tblue" in text


def test_docx_zip_bomb_is_refused_before_parsing() -> None:
    data = zip_bomb_docx(300)
    assert detect(data).kind == "docx"
    with pytest.raises(UnsupportedFileTypeError) as caught:
        extract(data, detect(data), **CAPS)
    assert "zip bomb" in caught.value.message


def test_html_text_leaves_out_script_and_style() -> None:
    data = SAMPLES["html"]
    text = extract(data, detect(data), **CAPS).text
    assert "Visible paragraph." in text and "Heading" in text
    assert "secret" not in text and "color" not in text


def test_damaged_pdf_is_a_415() -> None:
    data = b"%PDF-1.4\n" + b"garbage " * 100
    with pytest.raises(UnsupportedFileTypeError):
        extract(data, detect(data), **CAPS)
