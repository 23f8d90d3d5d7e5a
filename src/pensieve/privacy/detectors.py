"""Private-data detectors: find what must never leave this machine in the text of a request.

`PrivacyScanner` runs the built-in detectors a `PrivacyConfig` switches on, the user's own regular
expressions and the user's keywords over every text of a request and returns each `Finding` (a kind and a
character span; never the matched value, so findings are safe to log). It runs on every request, so it is
built to be cheap: every regular expression is compiled once, each detector has a prefilter (a literal
substring test or one shared pass over the digit clusters of the text) so prose costs little, and every
pattern is linear on hostile input (bounded repetitions and boundary lookbehinds, so no pattern is retried
at every position of a long run). Everything here is pure: no I/O, no clock, no shared mutable state.

What each built-in detector flags (they lean towards flagging: a false positive keeps a request local, a
false negative leaks it):

- ``email``: ASCII addresses, ``local@domain.tld`` (``jane.doe@example.com``, ``a+b@sub.example.co.uk``).
- ``phone``: 9 to 15 digits in a phone-like shape: international (a leading ``+``: ``+44 20 7946 0958``,
  ``+1-202-555-0143``, ``+33 1 23 45 67 89``, ``+44 (0)20 7946 0958``, ``+442079460958``), an area code
  in parentheses (``(202) 555-0143``), North American ``202-555-0143`` / ``1-800-555-0199`` (one consistent
  separator) and national numbers with a trunk ``0`` (``020 7946 0958``, ``01 23 45 67 89``). Plain digit
  runs, digits glued to words, dates, times, versions, IP addresses and space-grouped thousands are not.
- ``credit_card``: 13 to 19 digits passing the Luhn check, unseparated or in a printed layout with single
  spaces or hyphens: groups of four ending in a group of one to four (``4111 1111 1111 1111``), or the
  American Express / Diners 4-6-5 and 4-6-4 (random figures in a table rarely fit). All-same digits
  (``0000 0000 0000 0000``) are placeholders, not cards.
- ``iban``: upper-case IBANs, compact or in groups of four, valid per ISO 13616 mod-97; the length is checked
  for about forty countries (the SEPA area and a few more), other country codes need 15 to 34 characters.
- ``national_id``: US Social Security numbers (``123-45-6789``; area 000, 666 and 9xx, group 00 and serial
  0000 are never issued and are not flagged), UK National Insurance numbers (``AB123456C`` or
  ``AB 12 34 56 C``, without the prefixes that are never issued) and French NIR / INSEE numbers (15 digits
  starting 1 or 2, Corsican ``2A``/``2B`` departments included, compact or spaced as printed:
  ``1 84 12 76 451 089 46``, with a valid key).
- ``ip_address``: every IPv4 address (octets 0 to 255, not part of a longer dotted number such as the version
  ``1.2.3.4.5``) and IPv6 addresses, full or compressed. Loopback, private and link-local ranges are flagged
  too: they still describe someone's network. To stay clear of code and clocks an IPv6 candidate must
  contain a digit, and a compressed one needs three groups or a four-digit group (``2001:db8::1``,
  ``fe80::1``); so ``12:30:45``, ``std::vector``, ``a[1::2]`` and a bare ``::`` are not flagged; ``::1``
  is flagged except inside brackets (``[::1]``, where it is a URL host or a slice).
- ``api_key``: OpenAI / Anthropic ``sk-…`` keys, GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/
  ``github_pat_`` tokens, AWS access key ids (``AKIA``/``ASIA``), Google ``AIza`` keys, Slack ``xox[abpr]-``
  tokens, Stripe ``sk_live_``/``rk_live_`` (and ``_test_``) keys, JWTs, the token after ``Bearer``, and the
  value of an assignment to a secret-looking name (``api_key=…``, ``"password": "…"``, ``SECRET_KEY = …``,
  ``token: …``) when it has at least 8 characters. For the assignments only the value is flagged; values
  that are plainly code (a call, a subscript, an attribute path, ``${VAR}``) are skipped, and after the bare
  words ``secret`` and ``token`` the value must hold a non-letter, so prose like "the secret: patience"
  passes.
- ``private_key``: a PEM ``-----BEGIN … PRIVATE KEY-----`` block (RSA, EC, DSA, OPENSSH, PGP, ENCRYPTED or
  plain PKCS#8) through its matching END line, or to the end of the text when the block is cut off.

User keywords match whole words, case-insensitively: the keyword ``bluebird`` flags "Project Bluebird" but
not "bluebirds"; a phrase such as ``red kite`` matches with any whitespace between its words. User patterns
are compiled exactly as given (write ``(?i)`` for case-insensitivity); each finding's kind is the pattern's
name, and zero-width matches are ignored.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

# A character span [start, end) in one text.
Span = tuple[int, int]

# --- shared per-text state -----------------------------------------------------------------------------

# One pass over the digits of a text finds every place a number-shaped detector needs to look at:
# - clusters: four or more digits joined by at most two separator characters. Phone, card, SSN, NIR, NINO
#   and IPv4 numbers only ever match around one, so prose costs this single scan;
# - IBAN starts: two digits right after two capital letters (the check digits; tried only when no cluster
#   starts there, and a cluster preceded by two capitals is an IBAN start too).
_NUMBERS = re.compile(r"\d(?:(?:[ ().-]{0,2}\d){3,}|(?<=[A-Z]{2}\d)\d)")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_CAPITALS = frozenset(string.ascii_uppercase)


class _ScanText:
    """One text being scanned, with the derived views several detectors share, each computed on first use."""

    __slots__ = ("_clusters", "_iban_starts", "_lowered", "fully_lowered", "n", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self._clusters: list[Span] | None = None
        self._iban_starts: list[int] = []
        self._lowered: str | None = None
        self.fully_lowered = True  # after lowered(): False when only ASCII letters could be folded

    def _scan_numbers(self) -> list[Span]:
        if self._clusters is None:
            text = self.text
            clusters: list[Span] = []
            for m in _NUMBERS.finditer(text):
                a, b = m.span()
                if b - a >= 4:
                    clusters.append((a, b))
                if a >= 2 and text[a - 1] in _CAPITALS and text[a - 2] in _CAPITALS:
                    self._iban_starts.append(a - 2)
            self._clusters = clusters
        return self._clusters

    def clusters(self, min_length: int) -> list[Span]:
        """The digit clusters at least `min_length` characters long, in order."""
        return [(a, b) for a, b in self._scan_numbers() if b - a >= min_length]

    def iban_starts(self) -> list[int]:
        """Where an IBAN may start: two capital letters followed by two digits, in order."""
        self._scan_numbers()
        return self._iban_starts

    def lowered(self) -> str:
        """The text lower-cased with every index unchanged (for case-insensitive literal searches)."""
        if self._lowered is None:
            lowered = self.text.lower()
            # str.lower never shrinks a character, so equal lengths mean a one-to-one mapping; a few
            # characters (such as "İ") grow, and then only ASCII letters are folded, which keeps the indices.
            self.fully_lowered = len(lowered) == self.n
            self._lowered = lowered if self.fully_lowered else self.text.translate(_ASCII_LOWER)
        return self._lowered


# A window-searched pattern looks at most this many characters past its match; a match ending closer than
# this to a window cut short of the text's end could have passed a lookahead only because of the cut.
_LOOKAHEAD_SLACK = 3


def _cluster_matches(
    pattern: re.Pattern[str],
    t: _ScanText,
    clusters: Iterable[Span],
    left: int,
    right: int,
    accept: Callable[[re.Match[str]], Span | None],
) -> Iterator[Span]:
    """Search `pattern` only near the digit clusters: from `left` characters before to `right` after each.

    `accept` validates a match (checksum, digit count) and returns the span to flag or None; after a
    rejected match the search resumes one character later, so a valid match overlapping it is still found.
    """
    text, n = t.text, t.n
    for a, b in clusters:
        pos = max(0, a - left)
        endpos = min(n, b + right)
        limit = n if endpos == n else endpos - _LOOKAHEAD_SLACK
        while True:
            m = pattern.search(text, pos, endpos)
            if m is None or m.end() > limit:
                break
            span = accept(m)
            if span is None:
                pos = m.start() + 1
            else:
                yield span
                pos = m.end()


# --- checksums -----------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Whether a non-empty string of decimal digits passes the Luhn (mod 10) check of payment card numbers."""
    if not digits.isdecimal():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# IBAN length per country (ISO 13616 registry) for the SEPA area and a few common others.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
    "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip


def iban_valid(value: str) -> bool:
    """Whether `value` (spaces allowed) is a well-formed IBAN with a correct ISO 13616 mod-97 check."""
    iban = value.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban.isascii() or not iban.isalnum():
        return False
    country, check = iban[:2], iban[2:4]
    if not country.isalpha() or not check.isdigit():
        return False
    if _IBAN_LENGTHS.get(country, len(iban)) != len(iban):
        return False
    # Move the first four characters to the end, read letters as 10..35, and take the number mod 97.
    number = "".join(str(int(char, 36)) for char in iban[4:] + iban[:4])
    return int(number) % 97 == 1


def nir_valid(value: str) -> bool:
    """Whether `value` (spaces allowed) is a French NIR whose key is 97 - (first 13 digits mod 97)."""
    nir = value.replace(" ", "").upper()
    if len(nir) != 15 or nir[0] not in "12":
        return False
    body, key = nir[:13], nir[13:]
    # Corsica's departments 2A and 2B count as 19 and 18 in the key computation.
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    if not (body.isdigit() and key.isdigit() and body.isascii() and key.isascii()):
        return False
    return 97 - int(body) % 97 == int(key)


def _digit_count(value: str) -> int:
    return sum(char.isdigit() for char in value)


# --- email ---------------------------------------------------------------------------------------------

_EMAIL_LOCAL_CHARS = frozenset(string.ascii_letters + string.digits + "._%+-")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,20}[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_EMAIL_LOCAL_MAX = 64  # RFC 5321 limit; also bounds the backward walk on hostile input


def _find_email(t: _ScanText) -> Iterator[Span]:
    # Anchored on each "@" (a fast substring search) and grown in both directions, instead of a regex that
    # would try a local part at every position of the text.
    text = t.text
    at = text.find("@")
    while at != -1:
        start = at
        floor = max(0, at - _EMAIL_LOCAL_MAX)
        while start > floor and text[start - 1] in _EMAIL_LOCAL_CHARS:
            start -= 1
        while start < at and text[start] == ".":
            start += 1
        domain = _EMAIL_DOMAIN.match(text, at + 1) if start < at else None
        if domain is not None:
            yield start, domain.end()
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


# --- phone ---------------------------------------------------------------------------------------------

_PHONE = re.compile(
    r"""
    (?<![\w+.-])                                                  # not inside a word, number or version
    (?:
        \+[1-9]\d{0,2}                                            # international: country code, then
        (?:[ ]?\(0\)[ .-]?\d{1,5}|[ .-]?\(\d{1,5}\)[ .-]?\d{1,5}|[ .-]\d{1,5})
        (?:[ .-]\d{1,5}){0,5}                                     # separated groups
      | \+[1-9]\d{7,14}                                           # international, unseparated
      | \(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{4}                       # (202) 555-0143, (020) 7946 0958
      | (?<!\d[ ,])                                               # not a space-grouped figure (1 000 000 000)
        (?:
            (?:1[ .-])?\d{3}(?P<nanp>[ .-])\d{3}(?P=nanp)\d{4}    # 202-555-0143, 1-800-555-0199
          | 0[1-9]\d{0,3}(?P<trunk>[ .-])\d{2,4}(?:(?P=trunk)\d{2,4}){1,3}  # 020 7946 0958, 01 23 45 67 89
        )
    )
    (?![\w@]|[.-]\d)                                              # not followed by more of a word or number
    """,
    re.VERBOSE,
)
_PHONE_DIGITS = (9, 15)


def _accept_phone(m: re.Match[str]) -> Span | None:
    low, high = _PHONE_DIGITS
    return m.span() if low <= _digit_count(m.group()) <= high else None


def _find_phone(t: _ScanText) -> Iterator[Span]:
    # Left margin: "+", "(" or "+1 (" before the first digit of the cluster.
    return _cluster_matches(_PHONE, t, t.clusters(9), 4, 4, _accept_phone)


# --- credit card ---------------------------------------------------------------------------------------

# A printed card layout (see `_card_ends`), single spaces or hyphens between groups. The match may hold a
# trailing group too many ("4111 1111 1111 1111 2024"): the card itself is picked group by group in Python.
_CARD = re.compile(r"(?<![\w.])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?|\d{4}[ -]\d{6}[ -]\d{4,5})(?!\d)")
_DIGITS = re.compile(r"\d+")


def _card_ends(lengths: list[int], i: int) -> list[int]:
    """The indexes j for which groups i..j have a printed card layout, longest first.

    One group of 13-19 digits; groups of four with a shorter last group (4-4-4-4, 4-4-4-1, 4-4-4-4-3); or
    the American Express / Diners layouts 4-6-5 and 4-6-4. Random figures in a table rarely fit these.
    """
    first = lengths[i]
    if 13 <= first <= 19:
        return [i]
    if first != 4:
        return []
    ends: list[int] = []
    total, j = 4, i + 1
    while j < len(lengths) and lengths[j] <= 4 and total + lengths[j] <= 19:
        total += lengths[j]
        if total >= 13:
            ends.append(j)
        if lengths[j] < 4:
            break  # a short group ends the number
        j += 1
    if i + 2 < len(lengths) and lengths[i + 1] == 6 and lengths[i + 2] in (4, 5):
        ends.append(i + 2)
    return sorted(ends, reverse=True)


def _cards_in_run(text: str, groups: list[Span]) -> Iterator[Span]:
    """The Luhn-valid card numbers among consecutive digit groups, the longest from each group on."""
    lengths = [b - a for a, b in groups]
    i = 0
    while i < len(groups):
        for j in _card_ends(lengths, i):
            digits = "".join(text[a:b] for a, b in groups[i : j + 1])
            # All-same digits ("0000 0000 0000 0000") pass Luhn but are placeholders, not cards.
            if luhn_valid(digits) and digits.count(digits[0]) != len(digits):
                yield groups[i][0], groups[j][1]
                i = j
                break
        i += 1


def _find_credit_card(t: _ScanText) -> Iterator[Span]:
    text, n = t.text, t.n
    for a, b in t.clusters(13):
        pos = a
        while True:
            m = _CARD.search(text, pos, b)
            if m is None:
                break
            groups = [g.span() for g in _DIGITS.finditer(text, m.start(), m.end())]
            end = m.end()
            # A last group glued to a word or to a decimal part ("…1111.50") is not part of a card number.
            if end < n and (
                text[end].isalnum() or text[end] == "_" or (text[end] == "." and text[end + 1 : end + 2].isdigit())
            ):
                groups.pop()
            pos = m.start() + 1
            for span in _cards_in_run(text, groups):
                yield span
                pos = span[1]


# --- IBAN ----------------------------------------------------------------------------------------------

# Anchored at the starts found by the shared digit pass; the lookbehind rejects a candidate glued to a
# preceding letter or digit.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d\d(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_IBAN_GROUP = re.compile(r"[A-Z0-9]+")


def _find_iban(t: _ScanText) -> Iterator[Span]:
    text = t.text
    done_until = 0
    for start in t.iban_starts():
        if start < done_until:
            continue
        m = _IBAN.match(text, start)
        if m is None:
            continue
        # The candidate may run into a following group of letters or digits: try each group end, longest
        # first (a compact IBAN is a single group).
        for group in reversed(list(_IBAN_GROUP.finditer(m.group()))):
            if iban_valid(text[start : start + group.end()]):
                done_until = start + group.end()
                yield start, done_until
                break


# --- national ids --------------------------------------------------------------------------------------

_SSN = re.compile(r"(?<![\w.-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-]|\.\d)")
# UK NINO: first letter not D F I Q U V, second not D F I O Q U V, and never BG GB KN NK NT TN ZZ.
_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])",
    re.IGNORECASE,
)
# Compact, or spaced the way it is printed ("1 84 12 76 451 089 46"): random spacing is a table of figures.
_NIR = re.compile(
    r"(?<![\w.-])[12](?:\d{4}(?:\d\d|2[AaBb])\d{8}| \d\d \d\d (?:\d\d|2[AaBb]) \d{3} \d{3} ?\d\d)(?![\w-]|\.\d)"
)


def _span(m: re.Match[str]) -> Span:
    return m.span()


def _accept_nir(m: re.Match[str]) -> Span | None:
    return m.span() if nir_valid(m.group()) else None


def _find_national_id(t: _ScanText) -> Iterator[Span]:
    text, n = t.text, t.n
    ssn_clusters = [(a, b) for a, b in t.clusters(11) if text.count("-", a, b) >= 2]
    yield from _cluster_matches(_SSN, t, ssn_clusters, 0, 4, _span)
    # A NINO's digits start a cluster right after its letters (and maybe a space); only its first 8
    # characters matter, which keeps the search short inside a long run of figures.
    nino_clusters = [
        (a, min(b, a + 8))
        for a, b in t.clusters(6)
        if text[a - 1 : a].isalpha() or (text[a - 1 : a] == " " and text[a - 2 : a - 1].isalpha())
    ]
    yield from _cluster_matches(_NINO, t, nino_clusters, 4, 6, _span)
    # A NIR is one cluster of 15+ characters, unless a Corsican "2A"/"2B" splits it: then the cluster ends
    # right before that letter and the rest of the number follows within 20 characters.
    nir_clusters = [(a, b) for a, b in t.clusters(4) if b - a >= 15 or (b < n and text[b] in "AaBb")]
    yield from _cluster_matches(_NIR, t, nir_clusters, 0, 20, _accept_nir)


# --- IP addresses --------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
# A colon followed by a hex digit or a colon: the only places an IPv6 address can be (a fast literal scan).
_IPV6_GATE = re.compile(r":[0-9A-Fa-f:]")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]|\.\d)")
_HEX_COLON_RUN = re.compile(r"[0-9A-Fa-f:]*")
_HEX_DIGITS = frozenset(string.hexdigits)


def _plausible_ipv6(candidate: str) -> bool:
    """Whether a run of hex groups and colons is an IPv6 address rather than a time, a slice or code."""
    if ":::" in candidate or candidate.count("::") > 1 or not any(char.isdigit() for char in candidate):
        return False
    if "::" not in candidate:
        parts = candidate.split(":")
        return len(parts) == 8 and all(parts)
    head, tail = candidate.split("::")
    groups = (head.split(":") if head else []) + (tail.split(":") if tail else [])
    if not all(groups) or len(groups) > 7:
        return False  # a stray single colon at either end, or "::" standing for no group at all
    return candidate == "::1" or len(groups) >= 3 or any(len(group) == 4 for group in groups)


def _find_ipv6(t: _ScanText) -> Iterator[Span]:
    text = t.text
    pos = 0
    while True:
        gate = _IPV6_GATE.search(text, pos)
        if gate is None:
            return
        colon = gate.start()
        # An address can only start where this run of hex digits and colons starts (at most 4 hex digits
        # before the first colon); the pattern's lookbehind rejects a run glued to a word.
        start = colon
        while start > colon - 4 and start > 0 and text[start - 1] in _HEX_DIGITS:
            start -= 1
        m = _IPV6.match(text, start)
        if m is not None and _plausible_ipv6(m.group()) and not (m.group() == "::1" and text[start - 1 : start] == "["):
            yield m.span()
            pos = m.end()
        else:
            # No address starts inside this run either: skip all of it (keeps hostile input linear).
            run = _HEX_COLON_RUN.match(text, colon)
            pos = max(colon + 1, run.end() if run is not None else 0)


def _find_ip_address(t: _ScanText) -> Iterator[Span]:
    text = t.text
    ipv4_clusters = [(a, b) for a, b in t.clusters(7) if text.count(".", a, b) >= 3]
    yield from _cluster_matches(_IPV4, t, ipv4_clusters, 0, 4, _span)
    if ":" in t.text:
        yield from _find_ipv6(t)


# --- API keys and secrets ------------------------------------------------------------------------------

# Each token shape starts with its literal prefix (the regex engine finds those fast) and then rejects, by a
# fixed-width lookbehind, a prefix glued to a longer word ("task-…" holds "sk-"); failing at once there keeps
# hostile input such as "xsk-xsk-xsk-…" linear.
_TOKENS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        r"sk-(?<![\w-]sk-)[A-Za-z0-9_-]{20,}",  # OpenAI sk-, sk-proj-; Anthropic sk-ant-
        r"gh[pousr]_(?<![\w-]gh[pousr]_)[A-Za-z0-9]{30,}",  # GitHub classic tokens
        r"github_pat_(?<![\w-]github_pat_)[A-Za-z0-9_]{22,}",  # GitHub fine-grained tokens
        r"AKIA(?<![A-Za-z0-9]AKIA)[A-Z0-9]{16}(?![A-Za-z0-9])",  # AWS access key id
        r"ASIA(?<![A-Za-z0-9]ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",  # AWS temporary access key id
        r"AIza(?<![\w-]AIza)[A-Za-z0-9_-]{35}(?![\w-])",  # Google API key
        r"xox[abpr]-(?<![\w-]xox[abpr]-)[A-Za-z0-9-]{10,}",  # Slack
        r"sk_(?<![\w-]sk_)(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret keys
        r"rk_(?<![\w-]rk_)(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe restricted keys
        r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",  # JWT
    )
)
_BEARER_TAIL = re.compile(r"[ \t]+(?P<v>[A-Za-z0-9._~+/-]{20,}=*)")
_IDENT_CHARS = frozenset(string.ascii_letters + string.digits + "_.-")
_IDENT_MAX = 64
_IDENT_RUN = re.compile(rf"[A-Za-z0-9_.-]{{0,{_IDENT_MAX}}}")
# Substrings every secret-looking name contains, found with fast lower-case substring searches.
_SECRET_ROOTS = ("key", "secret", "pass", "pwd", "token")
# A whole (lower-cased) identifier whose last component names a secret: OPENAI_API_KEY, db.password, …
_SECRET_NAME = re.compile(
    r"(?:[a-z0-9_.-]*[_.-])?"
    r"(?P<kw>api[_-]?key|access[_-]?key(?:[_-]?id)?|secret(?:[_-]?(?:access[_-]?)?key)?|client[_-]?secret"
    r"|private[_-]?key|password|passwd|passphrase|pwd|(?:access|auth|refresh|session|api|id)[_-]?token|token)"
)
# After the name: an optional closing quote, then "=", ":", ":=", "=>" or "==", then the value.
_ASSIGN_HEAD = re.compile(r"""["']?[ \t]*(?::=|=>|==|[:=])[ \t]*""")
_QUOTED_VALUE = {quote: re.compile(rf"[^{quote}\n]{{8,}}") for quote in "\"'`"}
_UNQUOTED_RUN = re.compile(r"[^\s\"'`]*")
_VALUE_MIN = 8
# Only this much of an unquoted value is inspected to tell code from a secret (keeps hostile input linear).
_VALUE_INSPECT = 256
_ATTRIBUTE_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_PROSE_WORDS = ("secret", "token")


def _find_prefixed_tokens(text: str) -> Iterator[Span]:
    for pattern in _TOKENS:
        for m in pattern.finditer(text):
            yield m.span()


def _find_bearer(t: _ScanText) -> Iterator[Span]:
    text, lowered = t.text, t.lowered()
    at = lowered.find("bearer")
    while at != -1:
        if at == 0 or not text[at - 1].isalnum():
            m = _BEARER_TAIL.match(text, at + 6)
            # Opaque tokens always hold a digit; "bearer of-the-long-awaited-news" does not.
            if m is not None and any(char.isdigit() for char in m.group("v")):
                yield m.span("v")
        at = lowered.find("bearer", at + 6)


def _unquoted_secret(value: str, name: str, keyword: str) -> bool:
    """Whether an unquoted value assigned to `name` may be a secret rather than code or prose."""
    if value.startswith(("$", "{", "<", "%", "[", "(")) or "(" in value or "[" in value:
        return False  # a variable, a template, a call or a subscript
    if _ATTRIBUTE_PATH.fullmatch(value):
        return False  # self.password, settings.api_key
    lowered = value.lower()
    # Another variable: password=password, api_key=API_KEY, token=auth_token (a bare word such as
    # "supersecret" stays a candidate password).
    if (
        value.isidentifier()
        and not any(char.isdigit() for char in value)
        and (lowered in (name, keyword) or ("_" in value and any(root in lowered for root in _SECRET_ROOTS)))
    ):
        return False
    return not (keyword in _PROSE_WORDS and value.isalpha())  # "the secret: patience"


def _find_secret_assignments(t: _ScanText) -> Iterator[Span]:
    text, lowered = t.text, t.lowered()
    hits: list[int] = []
    for root in _SECRET_ROOTS:
        at = lowered.find(root)
        while at != -1:
            hits.append(at)
            at = lowered.find(root, at + 1)
    skip_until = -1
    # The last unquoted value measured: a value starting inside it ends where it ends, so a text packed with
    # "password=password=…" measures each run once instead of once per name.
    run_start = run_end = -1
    for at in sorted(hits):
        if at < skip_until:
            continue  # inside the identifier or the value just examined
        ident = _IDENT_RUN.match(text, at)
        assert ident is not None  # a {0,n} repetition always matches
        end = skip_until = ident.end()
        while end > at and text[end - 1] in ".-":
            end -= 1  # "password." ending a sentence
        head = _ASSIGN_HEAD.match(text, end)
        if head is None:
            continue  # the cheap test first: most mentions of "key" or "token" are not assignments
        start = at
        while start > 0 and at - start < _IDENT_MAX and text[start - 1] in _IDENT_CHARS:
            start -= 1
        name = _SECRET_NAME.fullmatch(lowered, start, end)
        if name is None:
            continue
        value_start = head.end()
        quote = text[value_start : value_start + 1]
        if quote in _QUOTED_VALUE:
            quoted = _QUOTED_VALUE[quote].match(text, value_start + 1)
            # A quoted template ("${DB_PASSWORD}", "{{ token }}") names a secret without holding it.
            if quoted is None or quoted.group().startswith(("${", "{{", "%(")):
                continue
            span = quoted.span()
        else:
            if not run_start <= value_start < run_end:
                run = _UNQUOTED_RUN.match(text, value_start)
                assert run is not None  # a * repetition always matches
                run_start, run_end = value_start, run.end()
            value_end = run_end
            while value_end > value_start and text[value_end - 1] in ",;)]}":
                value_end -= 1  # code around the value: f(password=hunter2hunter2), {"token": abc…}
            inspected = text[value_start : min(value_end, value_start + _VALUE_INSPECT)]
            if value_end - value_start < _VALUE_MIN or not _unquoted_secret(
                inspected, lowered[start:end], name.group("kw")
            ):
                continue
            span = (value_start, value_end)
        yield span
        skip_until = max(skip_until, span[1])


def _find_api_key(t: _ScanText) -> Iterator[Span]:
    yield from _find_prefixed_tokens(t.text)
    yield from _find_bearer(t)
    yield from _find_secret_assignments(t)


# --- private keys --------------------------------------------------------------------------------------

_PEM_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]{1,20} ){0,6})PRIVATE KEY( BLOCK)?-----")


def _find_private_key(t: _ScanText) -> Iterator[Span]:
    text = t.text
    if "PRIVATE KEY" not in text:
        return
    pos = 0
    while True:
        m = _PEM_BEGIN.search(text, pos)
        if m is None:
            return
        end_line = f"-----END {m.group(1)}PRIVATE KEY{m.group(2) or ''}-----"
        end = text.find(end_line, m.end())
        # A block cut off before its END line is masked to the end of the text: the key is in there.
        stop = t.n if end == -1 else end + len(end_line)
        yield m.start(), stop
        pos = stop


# --- registry ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detector:
    """A built-in detector: its name, a one-line description, and the function that finds its spans."""

    name: str
    description: str
    finder: Callable[[_ScanText], Iterable[Span]] = field(repr=False)

    def find(self, text: str) -> list[Span]:
        """Every span of `text` this detector flags, sorted, without duplicates."""
        return sorted(set(self.finder(_ScanText(text))))


BUILTIN_DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in (
        Detector("email", "e-mail addresses", _find_email),
        Detector("phone", "international and common national phone numbers", _find_phone),
        Detector("credit_card", "payment card numbers passing the Luhn check", _find_credit_card),
        Detector("iban", "IBANs with a valid mod-97 check", _find_iban),
        Detector("national_id", "US SSN, UK National Insurance and French NIR numbers", _find_national_id),
        Detector("ip_address", "IPv4 and IPv6 addresses, private ranges included", _find_ip_address),
        Detector("api_key", "API keys, access tokens, JWTs and secret assignments", _find_api_key),
        Detector("private_key", "PEM private key blocks", _find_private_key),
    )
}


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
        t = _ScanText(text)
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

    def find(self, t: _ScanText) -> Iterator[Span]:
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


__all__ = [
    "BUILTIN_DETECTORS",
    "Detector",
    "Finding",
    "PrivacyConfig",
    "PrivacyScanner",
    "Span",
    "iban_valid",
    "luhn_valid",
    "nir_valid",
]
