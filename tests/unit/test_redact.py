"""Redaction: markers replace every finding, overlapping spans merge, and nothing detected survives."""

from __future__ import annotations

import pytest

from pensieve.privacy.redact import redact_texts, redaction_marker
from pensieve.privacy.scanner import Finding, PrivacyConfig, PrivacyScanner

SCANNER = PrivacyScanner(PrivacyConfig(keywords=("bluebird",), custom_patterns=(("employee id", r"EMP-\d{6}"),)))


def redact(*texts: str) -> list[str]:
    return redact_texts(texts, SCANNER.scan(texts))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe@example.com now", "mail [REDACTED:EMAIL] now"),
        ("card 4111 1111 1111 1111, thanks", "card [REDACTED:CREDIT_CARD], thanks"),
        ("call +1-202-555-0143 or 020 7946 0958", "call [REDACTED:PHONE] or [REDACTED:PHONE]"),
        ("IBAN GB82 WEST 1234 5698 7654 32.", "IBAN [REDACTED:IBAN]."),
        ("SSN 123-45-6789", "SSN [REDACTED:NATIONAL_ID]"),
        ("ping 10.0.0.1 and 2001:db8::1", "ping [REDACTED:IP_ADDRESS] and [REDACTED:IP_ADDRESS]"),
        ("Authorization: Bearer abcdef1234567890abcdef12", "Authorization: Bearer [REDACTED:API_KEY]"),
        ("api_key=abcd1234efgh", "api_key=[REDACTED:API_KEY]"),
        ("Project Bluebird ships", "Project [REDACTED:KEYWORD] ships"),
        ("badge EMP-123456", "badge [REDACTED:EMPLOYEE ID]"),
        ("key:\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\nok", "key:\n[REDACTED:PRIVATE_KEY]\nok"),
        ("nothing to see here", "nothing to see here"),
    ],
)
def test_redaction_output(text: str, expected: str) -> None:
    assert redact(text) == [expected]


def test_only_texts_with_findings_change() -> None:
    texts = ["You are helpful.", "mail jane@example.com", "", "bye"]
    assert redact(*texts) == ["You are helpful.", "mail [REDACTED:EMAIL]", "", "bye"]


def test_findings_are_applied_to_their_own_text() -> None:
    texts = ["aaaa bbbb", "cccc dddd"]
    findings = [Finding("email", 1, 5, 9), Finding("phone", 0, 0, 4)]
    assert redact_texts(texts, findings) == ["[REDACTED:PHONE] bbbb", "cccc [REDACTED:EMAIL]"]


def test_overlapping_findings_are_merged_into_one_marker() -> None:
    text = "0123456789abcdef"
    findings = [Finding("keyword", 0, 6, 12), Finding("email", 0, 2, 8), Finding("phone", 0, 10, 14)]
    assert redact_texts([text], findings) == ["01[REDACTED:EMAIL]ef"]


def test_merged_span_takes_the_kind_of_the_longest_earliest_finding() -> None:
    text = "0123456789"
    findings = [Finding("keyword", 0, 2, 5), Finding("credit_card", 0, 2, 9), Finding("email", 0, 4, 6)]
    assert redact_texts([text], findings) == ["01[REDACTED:CREDIT_CARD]9"]


def test_adjacent_findings_keep_their_own_markers() -> None:
    findings = [Finding("email", 0, 0, 3), Finding("phone", 0, 3, 6)]
    assert redact_texts(["abcdef!"], findings) == ["[REDACTED:EMAIL][REDACTED:PHONE]!"]


def test_identical_findings_and_a_scan_with_overlaps() -> None:
    scanner = PrivacyScanner(PrivacyConfig(keywords=("jane",)))
    text = "write to jane@example.com"
    findings = scanner.scan([text])
    assert {f.kind for f in findings} == {"email", "keyword"}
    assert redact_texts([text], [*findings, *findings]) == ["write to [REDACTED:EMAIL]"]


def test_out_of_range_findings_are_ignored_and_spans_clamped() -> None:
    findings = [Finding("email", 5, 0, 3), Finding("phone", 0, 4, 99), Finding("email", -1, 0, 1)]
    assert redact_texts(["abcdef"], findings) == ["abcd[REDACTED:PHONE]"]


def test_no_findings_returns_an_equal_new_list() -> None:
    texts = ["a", "b"]
    result = redact_texts(texts, [])
    assert result == texts
    assert result is not texts


def test_marker() -> None:
    assert redaction_marker("credit_card") == "[REDACTED:CREDIT_CARD]"


def test_redacted_text_holds_none_of_the_detected_values() -> None:
    values = [
        "jane.doe@example.com",
        "+44 20 7946 0958",
        "(202) 555-0143",
        "4111 1111 1111 1111",
        "3782 822463 10005",
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "123-45-6789",
        "AB 12 34 56 C",
        "2 84 12 76 451 089 93",
        "192.168.1.10",
        "fe80::1ff:fe23:4567:890a",
        "sk-ant-api03-AbCdEf1234567890_GhIjKl",
        "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----",
        "Bluebird",
        "EMP-123456",
    ]
    texts = [
        "System: be brief.",
        "Here is everything: " + " | ".join(values[:9]) + ".",
        "And: " + " / ".join(values[9:]) + "\nThanks!",
    ]
    findings = SCANNER.scan(texts)
    redacted = redact_texts(texts, findings)
    assert redacted[0] == texts[0]
    joined = "\n".join(redacted)
    for value in values:
        assert value not in joined
    for finding in findings:
        assert texts[finding.text_index][finding.start : finding.end] not in joined
    # Nothing is left to find: the markers themselves are not private data.
    assert SCANNER.scan(redacted) == ()
