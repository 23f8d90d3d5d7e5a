"""Detectors of secrets: API keys, access tokens, JWTs, secret assignments and PEM private key blocks.

Part of `pensieve.privacy.detectors` (whose docstring says what each built-in detector flags), kept apart
because secret shapes are many and change often. Same rules: compiled once, prefiltered, linear on hostile
input, pure.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

from pensieve.privacy.scan_text import ScanText, Span

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


def _find_bearer(t: ScanText) -> Iterator[Span]:
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


def _find_secret_assignments(t: ScanText) -> Iterator[Span]:
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


def find_api_key(t: ScanText) -> Iterator[Span]:
    """Spans of known token shapes, `Bearer` tokens and values assigned to secret-looking names."""
    yield from _find_prefixed_tokens(t.text)
    yield from _find_bearer(t)
    yield from _find_secret_assignments(t)


# --- private keys --------------------------------------------------------------------------------------

_PEM_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]{1,20} ){0,6})PRIVATE KEY( BLOCK)?-----")


def find_private_key(t: ScanText) -> Iterator[Span]:
    """Spans of PEM private key blocks, through the END line (or the end of a cut-off text)."""
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
