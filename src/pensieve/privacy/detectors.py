"""Private-data detectors: find what must never leave this machine in the text of a request.

Each built-in `Detector` finds the character spans of one kind of private data; `BUILTIN_DETECTORS` holds
them in a fixed order. `pensieve.privacy.scanner.PrivacyScanner` runs the ones a `PrivacyConfig` switches
on. They run on every request, so they are built to be cheap: every regular expression is compiled once,
each detector has a prefilter (a literal substring test or one shared pass over the digit clusters of the
text, see `pensieve.privacy.scan_text`) so prose costs little, and every pattern is linear on hostile input
(bounded repetitions and boundary lookbehinds, so no pattern is retried at every position of a long run).
Everything here is pure: no I/O, no clock, no shared mutable state.

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
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from pensieve.privacy.checksums import digit_count, iban_valid, luhn_valid, nir_valid
from pensieve.privacy.scan_text import ScanText, Span, cluster_matches
from pensieve.privacy.secret_detectors import find_api_key, find_private_key

# --- email ---------------------------------------------------------------------------------------------

_EMAIL_LOCAL_CHARS = frozenset(string.ascii_letters + string.digits + "._%+-")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,20}[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_EMAIL_LOCAL_MAX = 64  # RFC 5321 limit; also bounds the backward walk on hostile input


def _find_email(t: ScanText) -> Iterator[Span]:
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
    return m.span() if low <= digit_count(m.group()) <= high else None


def _find_phone(t: ScanText) -> Iterator[Span]:
    # Left margin: "+", "(" or "+1 (" before the first digit of the cluster.
    return cluster_matches(_PHONE, t, t.clusters(9), 4, 4, _accept_phone)


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


def _find_credit_card(t: ScanText) -> Iterator[Span]:
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


def _find_iban(t: ScanText) -> Iterator[Span]:
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


def _find_national_id(t: ScanText) -> Iterator[Span]:
    text, n = t.text, t.n
    ssn_clusters = [(a, b) for a, b in t.clusters(11) if text.count("-", a, b) >= 2]
    yield from cluster_matches(_SSN, t, ssn_clusters, 0, 4, _span)
    # A NINO's digits start a cluster right after its letters (and maybe a space); only its first 8
    # characters matter, which keeps the search short inside a long run of figures.
    nino_clusters = [
        (a, min(b, a + 8))
        for a, b in t.clusters(6)
        if text[a - 1 : a].isalpha() or (text[a - 1 : a] == " " and text[a - 2 : a - 1].isalpha())
    ]
    yield from cluster_matches(_NINO, t, nino_clusters, 4, 6, _span)
    # A NIR is one cluster of 15+ characters, unless a Corsican "2A"/"2B" splits it: then the cluster ends
    # right before that letter and the rest of the number follows within 20 characters.
    nir_clusters = [(a, b) for a, b in t.clusters(4) if b - a >= 15 or (b < n and text[b] in "AaBb")]
    yield from cluster_matches(_NIR, t, nir_clusters, 0, 20, _accept_nir)


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


def _find_ipv6(t: ScanText) -> Iterator[Span]:
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


def _find_ip_address(t: ScanText) -> Iterator[Span]:
    text = t.text
    ipv4_clusters = [(a, b) for a, b in t.clusters(7) if text.count(".", a, b) >= 3]
    yield from cluster_matches(_IPV4, t, ipv4_clusters, 0, 4, _span)
    if ":" in t.text:
        yield from _find_ipv6(t)


# --- registry ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detector:
    """A built-in detector: its name, a one-line description, and the function that finds its spans."""

    name: str
    description: str
    finder: Callable[[ScanText], Iterable[Span]] = field(repr=False)

    def find(self, text: str) -> list[Span]:
        """Every span of `text` this detector flags, sorted, without duplicates."""
        return sorted(set(self.finder(ScanText(text))))


BUILTIN_DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in (
        Detector("email", "e-mail addresses", _find_email),
        Detector("phone", "international and common national phone numbers", _find_phone),
        Detector("credit_card", "payment card numbers passing the Luhn check", _find_credit_card),
        Detector("iban", "IBANs with a valid mod-97 check", _find_iban),
        Detector("national_id", "US SSN, UK National Insurance and French NIR numbers", _find_national_id),
        Detector("ip_address", "IPv4 and IPv6 addresses, private ranges included", _find_ip_address),
        Detector("api_key", "API keys, access tokens, JWTs and secret assignments", find_api_key),
        Detector("private_key", "PEM private key blocks", find_private_key),
    )
}


__all__ = ["BUILTIN_DETECTORS", "Detector"]
