"""The GBNF check that stands between a client's grammar and llama.cpp's parser (pensieve.engine.gbnf).

The refused cases are those llama.cpp itself refuses (syntax, an undefined rule, no root) and those it
does not refuse safely: a repetition whose maximum is below its minimum made a throwaway llama.cpp process
allocate until it was killed, and a numeric token id is never checked against the vocabulary.
"""

from __future__ import annotations

import pytest

from pensieve.engine.gbnf import MAX_REPETITION, GbnfError, check_gbnf

VALID = [
    'root ::= "a"{5,5}',
    'root ::= "yes" | "no"',
    'root ::= item+ ("," item)*\nitem ::= [a-z0-9-]{1,8}\n',
    '# a comment\nroot ::= ( "x"\n  | "y" )  # trailing\n',
    'root ::= [^"\\\\] "\\x41\\u00e9\\n" . "a"{2,} "b"?',
    "root ::= <|end_of_turn|> | !<|start|>",
    'root ::= "a"{0,3}\r\n',
]

INVALID = [
    ("", "empty"),
    ("   \n", "empty"),
    ('root ::= "a"{3,1}', "below its minimum"),
    (f'root ::= "a"{{{MAX_REPETITION + 1}}}', "may not exceed"),
    ('root ::= "a', "end of input"),
    ("root ::= [a-", "end of input"),
    ("root ::= foo", "undefined rule 'foo'"),
    ('x ::= "a"', "no 'root'"),
    ("garbage", "::="),
    ('root ::= ("a"', "')'"),
    ('root ::= "\\x4"', "hex digits"),
    ('root ::= "\\q"', "unknown escape"),
    ("root ::= *", "before '*'"),
    ("root ::= <[999999999]>", "token ids"),
    ('root ::= "a" ::= "b"', "end of the rule"),
]


@pytest.mark.parametrize("grammar", VALID)
def test_grammars_llama_cpp_accepts_pass(grammar: str) -> None:
    check_gbnf(grammar)


@pytest.mark.parametrize(("grammar", "reason"), INVALID)
def test_bad_grammars_are_refused_with_a_reason(grammar: str, reason: str) -> None:
    with pytest.raises(GbnfError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        check_gbnf(grammar)


def test_converted_json_schemas_pass_the_check() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    check_gbnf(llama_grammar.JSON_GBNF)
    schema = '{"type": "object", "properties": {"n": {"type": "integer"}, "tags": {"type": "array", "maxItems": 3}}}'
    check_gbnf(llama_grammar.json_schema_to_gbnf(schema))
