"""A syntax check of llama.cpp GBNF grammars, in pure Python, before one reaches llama.cpp.

llama.cpp parses a grammar in the worker process and mostly fails gracefully (a NULL sampler), but not
always: a repetition whose maximum is below its minimum (`"a"{3,1}`) makes it allocate without end until
the process is killed, and a numeric token reference (`<[999999999]>`) is accepted without a vocabulary
check. So every grammar is checked here first, following llama.cpp's own parser (src/llama-grammar.cpp):
the same syntax, the same limits, every referenced rule defined and a `root` rule present. What this
parser does not judge (left recursion) llama.cpp rejects gracefully, and the worker reports it.
"""

from __future__ import annotations

import re

MAX_GRAMMAR_CHARS = 100_000
MAX_REPETITION = 2000  # llama.cpp's MAX_REPETITION_THRESHOLD
_NAME = re.compile(r"[a-zA-Z0-9-]+")
_ESCAPES = {"x": 2, "u": 4, "U": 8}
_SIMPLE_ESCAPES = frozenset('"[]\\/nrt-')


class GbnfError(ValueError):
    """The grammar is not one llama.cpp would (safely) accept; the message says where."""


class _Parser:
    """A recursive-descent reader of GBNF, as llama.cpp reads it (newlines end a rule outside parentheses)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.defined: set[str] = set()
        self.used: set[str] = set()

    def fail(self, what: str) -> GbnfError:
        line = self.text.count("\n", 0, self.pos) + 1
        return GbnfError(f"{what} (line {line}, near {self.text[self.pos : self.pos + 20]!r})")

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def space(self, newline_ok: bool) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newline_ok and char in "\r\n"):
                self.pos += 1
            elif char == "#":
                while self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
                    self.pos += 1
            else:
                return

    def name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expecting a rule name")
        self.pos = match.end()
        return match.group()

    def integer(self) -> int:
        match = re.compile(r"[0-9]+").match(self.text, self.pos)
        if match is None:
            raise self.fail("expecting a number")
        self.pos = match.end()
        return int(match.group())

    def char(self) -> None:
        """One (possibly escaped) character of a literal or a character class."""
        if not self.peek():
            raise self.fail("unexpected end of input")
        if self.peek() != "\\":
            self.pos += 1
            return
        kind = self.peek(1)
        if kind in _ESCAPES:
            digits = self.text[self.pos + 2 : self.pos + 2 + _ESCAPES[kind]]
            if len(digits) != _ESCAPES[kind] or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise self.fail(f"expecting {_ESCAPES[kind]} hex digits after \\{kind}")
            self.pos += 2 + _ESCAPES[kind]
        elif kind in _SIMPLE_ESCAPES:
            self.pos += 2
        else:
            raise self.fail(f"unknown escape \\{kind}")

    def grammar(self) -> None:
        self.space(True)
        while self.pos < len(self.text):
            self.rule()
        if "root" not in self.defined:
            raise GbnfError("the grammar has no 'root' rule")
        missing = sorted(self.used - self.defined)
        if missing:
            raise GbnfError(f"undefined rule {missing[0]!r}")

    def rule(self) -> None:
        self.defined.add(self.name())
        self.space(False)
        if not self.text.startswith("::=", self.pos):
            raise self.fail("expecting ::=")
        self.pos += 3
        self.space(True)
        self.alternates(nested=False)
        if self.peek() == "\r":
            self.pos += 2 if self.peek(1) == "\n" else 1
        elif self.peek() == "\n":
            self.pos += 1
        elif self.peek():
            raise self.fail("expecting the end of the rule")
        self.space(True)

    def alternates(self, *, nested: bool) -> None:
        self.sequence(nested=nested)
        while self.peek() == "|":
            self.pos += 1
            self.space(True)
            self.sequence(nested=nested)

    def sequence(self, *, nested: bool) -> None:
        has_item = False
        while self.pos < len(self.text):
            char = self.peek()
            if char == '"':
                self.pos += 1
                while self.peek() != '"':
                    self.char()
                self.pos += 1
            elif char == "[":
                self.pos += 1 + (self.peek(1) == "^")
                while self.peek() != "]":
                    self.char()
                    if self.peek() == "-" and self.peek(1) not in ("]", ""):
                        self.pos += 1
                        self.char()
                self.pos += 1
            elif char == "<" or (char == "!" and self.peek(1) == "<"):
                self.token()
            elif _NAME.match(char):
                self.used.add(self.name())
            elif char == "(":
                self.pos += 1
                self.space(True)
                self.alternates(nested=True)
                if self.peek() != ")":
                    raise self.fail("expecting ')'")
                self.pos += 1
            elif char == ".":
                self.pos += 1
            elif char in "*+?{":
                if not has_item:
                    raise self.fail(f"expecting an item before {char!r}")
                self.repetition()
                self.space(nested)
                continue
            else:
                return
            has_item = True
            self.space(nested)

    def token(self) -> None:
        self.pos += 2 if self.peek() == "!" else 1
        end = self.text.find(">", self.pos)
        if end < 0:
            raise self.fail("expecting '>'")
        if self.peek() == "[":
            # A numeric token id: llama.cpp does not check it against the vocabulary.
            raise self.fail("token ids (<[id]>) are not accepted; name the token (<|name|>) or use a literal")
        self.pos = end + 1

    def repetition(self) -> None:
        if self.peek() != "{":
            self.pos += 1
            return
        start = self.pos
        self.pos += 1
        self.space(True)
        low, high = self.integer(), None
        self.space(True)
        if self.peek() == ",":
            self.pos += 1
            self.space(True)
            if self.peek().isdigit():
                high = self.integer()
                self.space(True)
        else:
            high = low
        if self.peek() != "}":
            raise self.fail("expecting '}'")
        self.pos, end = start, self.pos + 1  # errors point at the repetition itself
        if low > MAX_REPETITION or (high is not None and high > MAX_REPETITION):
            raise self.fail(f"a repetition may not exceed {MAX_REPETITION}")
        if high is not None and high < low:
            raise self.fail(f"a repetition's maximum ({high}) is below its minimum ({low})")
        self.pos = end


def check_gbnf(grammar: str) -> None:
    """Raise GbnfError unless `grammar` is a GBNF grammar llama.cpp can take without harm."""
    if not grammar.strip():
        raise GbnfError("the grammar is empty")
    if len(grammar) > MAX_GRAMMAR_CHARS:
        raise GbnfError(f"the grammar is longer than {MAX_GRAMMAR_CHARS} characters")
    _Parser(grammar).grammar()
