"""Private-data detectors: what each one flags and ignores, the checksums, keywords, patterns and the scanner."""

from __future__ import annotations

import pytest

from pensieve.privacy.checksums import iban_valid, luhn_valid, nir_valid
from pensieve.privacy.detectors import BUILTIN_DETECTORS
from pensieve.privacy.scanner import Finding, PrivacyConfig, PrivacyScanner

ALL = PrivacyScanner(PrivacyConfig())

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n"
    "-----END RSA PRIVATE KEY-----"
)


def found(name: str, text: str) -> list[str]:
    """The substrings of `text` the built-in detector `name` flags."""
    return [text[start:end] for start, end in BUILTIN_DETECTORS[name].find(text)]


def test_builtin_detectors_are_named_in_a_fixed_order() -> None:
    assert list(BUILTIN_DETECTORS) == [
        "email",
        "phone",
        "credit_card",
        "iban",
        "national_id",
        "ip_address",
        "api_key",
        "private_key",
    ]
    assert PrivacyConfig().detectors == frozenset(BUILTIN_DETECTORS)


# (detector, text, the exact substring it must flag)
POSITIVES = [
    ("email", "mail jane.doe@example.com now", "jane.doe@example.com"),
    ("email", "cc: a+b@sub.example.co.uk.", "a+b@sub.example.co.uk"),
    ("email", "<John.Smith_99@Example.ORG>", "John.Smith_99@Example.ORG"),
    ("phone", "call +44 20 7946 0958 today", "+44 20 7946 0958"),
    ("phone", "call +1-202-555-0143", "+1-202-555-0143"),
    ("phone", "Tel: +33 1 23 45 67 89", "+33 1 23 45 67 89"),
    ("phone", "+44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
    ("phone", "+1 (202) 555-0143", "+1 (202) 555-0143"),
    ("phone", "whatsapp +442079460958", "+442079460958"),
    ("phone", "office (202) 555-0143.", "(202) 555-0143"),
    ("phone", "cell: 202-555-0143", "202-555-0143"),
    ("phone", "cell: 202.555.0143", "202.555.0143"),
    ("phone", "toll free 1-800-555-0199", "1-800-555-0199"),
    ("phone", "London 020 7946 0958", "020 7946 0958"),
    ("phone", "Paris 01 23 45 67 89", "01 23 45 67 89"),
    ("credit_card", "card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
    ("credit_card", "4111-1111-1111-1111", "4111-1111-1111-1111"),
    ("credit_card", "pan=4111111111111111;", "4111111111111111"),
    ("credit_card", "amex 3782 822463 10005", "3782 822463 10005"),
    ("credit_card", "diners 3056 930902 5904", "3056 930902 5904"),
    ("credit_card", "old visa 4222222222222", "4222222222222"),
    ("credit_card", "ref 12 4111 1111 1111 1111 2024", "4111 1111 1111 1111"),
    ("iban", "pay GB82 WEST 1234 5698 7654 32 please", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "IBAN: DE89370400440532013000", "DE89370400440532013000"),
    ("iban", "FR1420041010050500013M02606", "FR1420041010050500013M02606"),
    ("iban", "NL91 ABNA 0417 1643 00.", "NL91 ABNA 0417 1643 00"),
    ("iban", "Norway NO9386011117947", "NO9386011117947"),
    ("national_id", "SSN 123-45-6789.", "123-45-6789"),
    ("national_id", "NI number AB123456C", "AB123456C"),
    ("national_id", "NI number AB 12 34 56 C", "AB 12 34 56 C"),
    ("national_id", "ni: ab123456c", "ab123456c"),
    ("national_id", "NIR 284127645108993", "284127645108993"),
    ("national_id", "NIR 2 84 12 76 451 089 93", "2 84 12 76 451 089 93"),
    ("national_id", "NIR 2 84 12 2A 451 089 80", "2 84 12 2A 451 089 80"),
    ("ip_address", "server at 192.168.1.10.", "192.168.1.10"),
    ("ip_address", "http://127.0.0.1:8080/", "127.0.0.1"),
    ("ip_address", "route 10.0.0.0/8", "10.0.0.0"),
    ("ip_address", "dns 8.8.8.8", "8.8.8.8"),
    ("ip_address", "v6 2001:db8::1 ok", "2001:db8::1"),
    ("ip_address", "fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a"),
    ("ip_address", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ip_address", "link-local fe80::1", "fe80::1"),
    ("ip_address", "http://[2001:db8::42]:8080", "2001:db8::42"),
    ("ip_address", "loopback ::1", "::1"),
    ("api_key", "key sk-abcdefghijklmnopqrstuvwx1234", "sk-abcdefghijklmnopqrstuvwx1234"),
    ("api_key", "sk-proj-AbCdEf1234567890GhIjKlMnOp", "sk-proj-AbCdEf1234567890GhIjKlMnOp"),
    ("api_key", "sk-ant-api03-AbCdEf1234567890_GhIjKl", "sk-ant-api03-AbCdEf1234567890_GhIjKl"),
    ("api_key", "ghp_" + "A1b2C3d4" * 4 + "wxyz", "ghp_" + "A1b2C3d4" * 4 + "wxyz"),
    ("api_key", "gho_" + "Z" * 36, "gho_" + "Z" * 36),
    ("api_key", "github_pat_11ABCDEFG0123456789_abcdefghij", "github_pat_11ABCDEFG0123456789_abcdefghij"),
    ("api_key", "aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key", "aws ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
    ("api_key", "AIzaSyD-abcdefghijklmnopqrstuvwxyz01234", "AIzaSyD-abcdefghijklmnopqrstuvwxyz01234"),
    ("api_key", "slack xoxb-123456789012-1234567890123-AbCdEf", "xoxb-123456789012-1234567890123-AbCdEf"),
    ("api_key", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("api_key", "stripe rk_live_4eC39HqLyjWDarjtT1zdp7dc", "rk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    (
        "api_key",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("api_key", "Authorization: Bearer abcdef1234567890abcdef12", "abcdef1234567890abcdef12"),
    ("api_key", "api_key=abcd1234efgh", "abcd1234efgh"),
    ("api_key", "export OPENAI_API_KEY=my-own-key-123", "my-own-key-123"),
    ("api_key", '{"password": "hunter2 is my pass"}', "hunter2 is my pass"),
    ("api_key", "password = 'correcthorse'", "correcthorse"),
    ("api_key", "DB_PASSWORD=supersecret", "supersecret"),
    ("api_key", "secret: s3cr3t-value", "s3cr3t-value"),
    ("api_key", "token=0123456789abcdef", "0123456789abcdef"),
    ("api_key", "spring.datasource.password: Pa$$w0rd!", "Pa$$w0rd!"),
    ("api_key", "x-api-key: 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
    ("api_key", "connect(user='jane', password=hunter2hunter2)", "hunter2hunter2"),
    ("api_key", "Password: hunter2hunter2", "hunter2hunter2"),
    ("private_key", f"here:\n{PEM}\nthanks", PEM),
    ("private_key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", None),
    ("private_key", "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----", None),
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----", None),
    ("private_key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----", None),
    ("private_key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQO\n-----END PGP PRIVATE KEY BLOCK-----", None),
]


@pytest.mark.parametrize(("name", "text", "expected"), POSITIVES)
def test_detector_flags_real_data(name: str, text: str, expected: str | None) -> None:
    assert found(name, text) == [text if expected is None else expected]


# (detector, text it must not flag)
NEGATIVES = [
    ("email", "decorators like @dataclass and @property"),
    ("email", "x @ y, user@localhost, @@, a@b"),
    ("phone", "The year 2024 had 365 days"),
    ("phone", "version 1.2.3 and 10.4.22.1"),
    ("phone", "meet at 12:30 or 12:30:45"),
    ("phone", "it costs $1,299.99"),
    ("phone", "3x^2 + 2x - 5 = 0"),
    ("phone", "released 2024-01-15"),
    ("phone", "host 192.168.100.200"),
    ("phone", "order12025550143 and id 12025550143"),
    ("phone", "a billion is 1 000 000 000"),
    ("phone", "dates 01.02.2024 12:30"),
    ("phone", "call 555-0143 (too short)"),
    ("phone", "ISBN 978-3-16-148410-0"),
    ("credit_card", "4111 1111 1111 1112"),
    ("credit_card", "41111111111111111111111"),
    ("credit_card", "id4111111111111111"),
    ("credit_card", "0000 0000 0000 0000"),
    ("credit_card", "pi = 3.14159265358979323"),
    ("credit_card", "scores 12 15 9 7 31 22 18 5 3 41 11 8"),
    ("credit_card", "ISBN 978-3-16-148410-0"),
    ("iban", "GB82 WEST 1234 5698 7654 33"),
    ("iban", "DE89370400440532013001"),
    ("iban", "GB82WEST123456987654"),
    ("iban", "XGB82WEST12345698765432"),
    ("iban", "MP3 AB12 CD34 and HTTP2 over TLS13"),
    ("national_id", "000-45-6789 666-45-6789 900-45-6789 123-00-6789 123-45-0000"),
    ("national_id", "phone 202-555-0143, part 1234-56-7890"),
    ("national_id", "BG123456C GB123456C DA123456C QQ123456C AB123456E"),
    ("national_id", "NIR 284127645108994"),
    ("national_id", "digits 2 84 12 76 451 089 94"),
    ("ip_address", "version 1.2.3.4.5"),
    ("ip_address", "256.1.1.1 and 1.2.3 and 01.02.03.04"),
    ("ip_address", "meet at 12:30:45"),
    ("ip_address", "the empty address ::"),
    ("ip_address", "std::vector<int> and Foo::bar and dead::beef"),
    ("ip_address", "slices a[1::2], a[::2], a[::1]"),
    ("ip_address", "mac 00:1A:2B:3C:4D:5E"),
    ("ip_address", "ratio 16:9 at 2024-01-15T12:30:45Z"),
    ("api_key", "task-management-system-for-small-teams"),
    ("api_key", "the secret: patience is key"),
    ("api_key", "password = get_password()"),
    ("api_key", "password=password"),
    ("api_key", "self.password = self.password_field"),
    ("api_key", "token = os.environ['TOKEN_VALUE']"),
    ("api_key", "token: Optional[str] = None"),
    ("api_key", 'password = "${DB_PASSWORD}"'),
    ("api_key", "max_tokens=100000000, tokenizer=AutoTokenizer"),
    ("api_key", "password: short"),
    ("api_key", "the bearer of bad news-and-more-news-again"),
    ("api_key", "sk-short"),
    ("private_key", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"),
    ("private_key", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
]


@pytest.mark.parametrize(("name", "text"), NEGATIVES)
def test_detector_ignores_lookalikes(name: str, text: str) -> None:
    assert found(name, text) == []


ORDINARY = [
    "The year 2024 had 365 days.",
    "Upgrade from version 1.2.3 to 1.2.4 before 10:45 tomorrow.",
    "Meet at 12:30:45, the ticket is $1,299.99 (or €1.299,99).",
    "Solve 3x^2 + 2x - 5 = 0 and plot f(x) for x in [-10, 10].",
    "Born on 1990-05-17, moved on 15/06/2012, page 123 of 456.",
    "Population 67,390,000; area 643,801 km2; GDP 2.9 trillion.",
    "uuid 123e4567-e89b-12d3-a456-426614174000, sha e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "def f(xs):\n    return xs[1::2] + xs[::-1]\n\nstd::vector<int> v; a = b ? c : d;",
    "Use max_tokens=512, temperature: 0.7, api_key=None, password=password, token: str = ''.",
    "Pi is 3.14159265358979 and e is 2.718281828459045.",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_prose_code_and_numbers_are_not_private(text: str) -> None:
    assert ALL.scan([text]) == ()
    assert not ALL.is_private([text])


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("378282246310005", True),
        ("5555555555554444", True),
        ("6011111111111117", True),
        ("79927398713", True),
        ("79927398710", False),
        ("", False),
        ("4111 1111 1111 1111", False),  # digits only
        ("٤١١١١١١١١١١١١١١١", True),  # Arabic-Indic digits are digits too
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("GB82 WEST 1234 5698 7654 32", True),
        ("GB82WEST12345698765432", True),
        ("DE89370400440532013000", True),
        ("CH9300762011623852957", True),
        ("BE68539007547034", True),
        ("GB82 WEST 1234 5698 7654 33", False),  # check digits wrong
        ("GB82WEST1234569876543", False),  # one character short for GB
        ("DE89 3704 0044 0532 0130 00X", False),
        ("82GBWEST12345698765432", False),
    ],
)
def test_iban_mod97(iban: str, valid: bool) -> None:
    assert iban_valid(iban) is valid


@pytest.mark.parametrize(
    ("nir", "valid"),
    [
        ("284127645108993", True),
        ("2 84 12 76 451 089 93", True),
        ("185057800608491", True),
        ("284122A45108980", True),  # Corsica: 2A counts as 19
        ("185072B00608494", True),  # Corsica: 2B counts as 18
        ("284127645108994", False),
        ("384127645108993", False),  # must start with 1 or 2
        ("28412764510899", False),
    ],
)
def test_nir_key(nir: str, valid: bool) -> None:
    assert nir_valid(nir) is valid


def test_private_key_cut_off_is_flagged_to_the_end_of_the_text() -> None:
    text = "my key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    assert found("private_key", text) == [text[text.index("-----BEGIN") :]]


def test_two_private_keys_are_two_blocks() -> None:
    text = f"{PEM}\nand\n{PEM}"
    assert found("private_key", text) == [PEM, PEM]


def test_secret_assignment_flags_only_the_value() -> None:
    text = 'config = {"api_key": "abcd1234efgh5678", "user": "jane"}'
    assert found("api_key", text) == ["abcd1234efgh5678"]


def test_digits_glued_to_words_are_not_numbers() -> None:
    text = "tracking ABC4111111111111111XYZ and x202-555-0143 and v192.168.1.1"
    assert ALL.scan([text]) == ()


# --- keywords ------------------------------------------------------------------------------------------


def keyword_hits(keywords: tuple[str, ...], text: str) -> list[str]:
    scanner = PrivacyScanner(PrivacyConfig(detectors=frozenset(), keywords=keywords))
    findings = scanner.scan([text])
    assert all(f.kind == "keyword" for f in findings)
    return [text[f.start : f.end] for f in findings]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Status of Project Bluebird?", ["Bluebird"]),
        ("BLUEBIRD launch; bluebird again", ["BLUEBIRD", "bluebird"]),
        ("bluebirds and bluebird_v2 and bluebird-v2", ["bluebird"]),
        ("the Red Kite plan", ["Red Kite"]),
        ("red\n  kite spotted", ["red\n  kite"]),
        ("red kites and a red car", []),
        ("Café Bluebird — très secret", ["Bluebird"]),
        ("İstanbul office: bluebird", ["bluebird"]),
        ("\u212aite-shaped red \u212aite", ["red \u212aite"]),
    ],
)
def test_keywords_match_whole_words_case_insensitively(text: str, expected: list[str]) -> None:
    assert keyword_hits(("bluebird", "red kite"), text) == expected


def test_keywords_with_punctuation_and_blank_entries() -> None:
    assert keyword_hits(("C++", "  ", ""), "we use C++ and C++17") == ["C++"]


def test_non_ascii_keyword() -> None:
    assert keyword_hits(("Zürich",), "office in ZÜRICH, not Zürichsee") == ["ZÜRICH"]


def test_longer_phrase_wins_over_its_first_word() -> None:
    assert keyword_hits(("red", "red kite"), "a red kite and a red car") == ["red kite", "red"]


# --- custom patterns and configuration -----------------------------------------------------------------


def test_custom_pattern_findings_are_named_after_the_pattern() -> None:
    scanner = PrivacyScanner(
        PrivacyConfig(
            detectors=frozenset(), custom_patterns=(("employee_id", r"EMP-\d{6}"), ("case", r"(?i)case #\d+"))
        )
    )
    text = "EMP-123456 opened CASE #42; emp-654321 did not"
    assert [(f.kind, text[f.start : f.end]) for f in scanner.scan([text])] == [
        ("employee_id", "EMP-123456"),
        ("case", "CASE #42"),
    ]


def test_custom_pattern_is_compiled_as_given() -> None:
    scanner = PrivacyScanner(PrivacyConfig(detectors=frozenset(), custom_patterns=(("code", r"ABC\d"),)))
    assert scanner.scan(["abc1"]) == ()
    assert scanner.is_private(["ABC1"])


def test_zero_width_custom_matches_are_ignored() -> None:
    scanner = PrivacyScanner(PrivacyConfig(detectors=frozenset(), custom_patterns=(("ahead", r"\bx(?=y)|(?=q)"),)))
    assert [(f.start, f.end) for f in scanner.scan(["q xy"])] == [(2, 3)]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (PrivacyConfig(custom_patterns=(("employee_id", "EMP-(\\d+"),)), "employee_id"),
        (PrivacyConfig(custom_patterns=(("", "EMP"),)), "empty name"),
        (PrivacyConfig(custom_patterns=((" ", "EMP"),)), "empty name"),
        (PrivacyConfig(custom_patterns=(("everything", "x*"),)), "everything"),
        (PrivacyConfig(custom_patterns=(("everything", "x*"),)), "empty string"),
        (PrivacyConfig(detectors=frozenset({"email", "passport"})), "passport"),
    ],
)
def test_invalid_configuration_is_rejected_with_a_clear_message(config: PrivacyConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrivacyScanner(config)


def test_unknown_detector_message_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: email, phone, credit_card"):
        PrivacyScanner(PrivacyConfig(detectors=frozenset({"ssn"})))


def test_only_enabled_detectors_run() -> None:
    text = "jane@example.com, +1-202-555-0143, 4111 1111 1111 1111, 10.0.0.1"
    scanner = PrivacyScanner(PrivacyConfig(detectors=frozenset({"email", "ip_address"})))
    assert [f.kind for f in scanner.scan([text])] == ["email", "ip_address"]
    assert PrivacyScanner(PrivacyConfig(detectors=frozenset())).scan([text]) == ()


# --- the scanner ---------------------------------------------------------------------------------------


def test_scan_reports_the_text_index_and_sorts_findings() -> None:
    texts = ["You are a helpful assistant.", "", "ip 10.0.0.1 mail jane@example.com", "card 4111111111111111"]
    findings = ALL.scan(texts)
    assert findings == (
        Finding("ip_address", 2, 3, 11),
        Finding("email", 2, 17, 33),
        Finding("credit_card", 3, 5, 21),
    )
    assert [(f.text_index, f.start) for f in findings] == sorted((f.text_index, f.start) for f in findings)


def test_overlapping_findings_of_different_kinds_are_all_reported() -> None:
    scanner = PrivacyScanner(PrivacyConfig(keywords=("jane",)))
    kinds = {f.kind for f in scanner.scan(["write to jane@example.com"])}
    assert kinds == {"email", "keyword"}


def test_is_private() -> None:
    assert ALL.is_private(["hello", "my SSN is 123-45-6789"])
    assert not ALL.is_private(["hello", "", "what is 2 + 2?"])
    assert not ALL.is_private([])


def test_a_long_realistic_prompt_finds_exactly_its_private_data() -> None:
    filler = "Please summarise the quarterly report; revenue grew 12% to 3.4 million in 2024. " * 60
    secrets = {
        "email": "jane.doe@example.com",
        "phone": "+44 20 7946 0958",
        "credit_card": "4111 1111 1111 1111",
        "iban": "GB82 WEST 1234 5698 7654 32",
        "national_id": "123-45-6789",
        "ip_address": "192.168.1.10",
        "api_key": "sk-proj-AbCdEf1234567890GhIjKlMnOp",
    }
    text = filler + "Details: " + " ; ".join(secrets.values()) + ". " + filler
    assert len(text) > 8000
    assert {(f.kind, text[f.start : f.end]) for f in ALL.scan([text])} == set(secrets.items())


HOSTILE = [
    "a@" * 50_000,
    "a" * 100_000 + "@",
    "x@" + "a." * 50_000,
    "1" * 100_000,
    "1 " * 50_000,
    "1-" * 50_000,
    "1." * 50_000,
    "4111 " * 20_000,
    "(1)" * 33_000,
    "+1 " * 33_000,
    "a:" * 50_000,
    "1::" * 33_000,
    "xsk-" * 25_000,
    "eyJa" * 25_000,
    "key" * 33_000,
    "password=" * 11_000,
    "password=(" * 10_000,
    'password="' * 10_000,
    "bearer " * 14_000,
    "-----BEGIN RSA " * 7_000,
    "AB12" * 25_000,
    "a1@b.c:2.3-4 " * 8_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=[f"{t[:12]!r}x{len(t)}" for t in HOSTILE])
def test_hostile_input_finishes(text: str) -> None:
    # No timing assert: a catastrophic (quadratic or exponential) pattern would hang here instead.
    scanner = PrivacyScanner(PrivacyConfig(keywords=("bluebird", "a a")))
    findings = scanner.scan([text])
    assert all(0 <= f.start < f.end <= len(text) for f in findings)
