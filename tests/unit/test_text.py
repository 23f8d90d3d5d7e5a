"""Stop sequences, UTF-8 reassembly and whitespace trimming of streamed text."""

from __future__ import annotations

from pensieve.engine.text import EdgeWhitespaceTrimmer, StopSequenceFilter, Utf8Assembler, aligned_logprobs
from pensieve.engine_api import TokenLogprob


def feed(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    stopper = StopSequenceFilter(stops)
    emitted = []
    for piece in pieces:
        text, hit = stopper.push(piece)
        emitted.append(text)
        if hit:
            return emitted, True
    emitted.append(stopper.flush())
    return emitted, False


def test_stop_sequence_split_across_pieces_is_never_emitted() -> None:
    emitted, hit = feed(["END"], ["hello E", "N", "D world"])
    assert hit
    assert "".join(emitted) == "hello "
    assert emitted[0] == "hello "  # the partial "E" was held back, not sent and retracted


def test_false_partial_match_is_released() -> None:
    emitted, hit = feed(["END"], ["an E", "xample"])
    assert not hit
    assert emitted == ["an ", "Example", ""]


def test_earliest_of_several_stops_wins() -> None:
    emitted, hit = feed(["world", "lo"], ["hello world"])
    assert hit
    assert "".join(emitted) == "hel"


def test_without_stops_text_passes_through() -> None:
    emitted, hit = feed([], ["a", "b"])
    assert emitted == ["a", "b", ""]
    assert not hit


def test_held_text_is_flushed_at_the_end() -> None:
    emitted, hit = feed(["\nUser:"], ["Paris.", "\n", "Us"])
    assert not hit
    assert "".join(emitted) == "Paris.\nUs"


def test_utf8_character_split_across_tokens() -> None:
    assembler = Utf8Assembler()
    data = "é😀".encode()
    out = [assembler.push(data[i : i + 1]) for i in range(len(data))]
    assert "".join(out) + assembler.flush() == "é😀"
    assert out[0] == ""  # nothing emitted until the character is complete


def test_incomplete_utf8_at_end_becomes_replacement_character() -> None:
    assembler = Utf8Assembler()
    assert assembler.push("😀".encode()[:2]) == ""
    assert assembler.flush() == "\ufffd"


def test_edge_whitespace_is_trimmed_without_touching_inner_spaces() -> None:
    trimmer = EdgeWhitespaceTrimmer()
    pieces = [" ", " The", " capital", " is", " Paris.", "\n", "\n"]
    emitted = [trimmer.push(piece) for piece in pieces]
    assert "".join(emitted) == "The capital is Paris."
    assert emitted[1] == "The"


def test_inner_newlines_survive_trimming() -> None:
    trimmer = EdgeWhitespaceTrimmer()
    emitted = [trimmer.push(piece) for piece in ["Line one.", "\n\n", "Line two.", "\n"]]
    assert "".join(emitted) == "Line one.\n\nLine two."


def test_the_confidence_window_judges_the_first_tokens_with_text() -> None:
    from pensieve.engine.text import ConfidenceWindow

    window = ConfidenceWindow(2)
    assert ConfidenceWindow.measured_tokens(2) == 2 + ConfidenceWindow.MAX_BLANK
    assert ConfidenceWindow.measured_tokens(0) == 0
    window.push(b" ", -0.01)  # the space before a number says nothing: skipped
    window.push(b"1", -0.7)
    assert window.take() == (-0.7,)
    window.push(b"\n", None)  # not measured by the worker: ignored
    window.push(b"2", -1.5)
    window.push(b"3", -2.5)  # past the window
    assert window.take() == (-1.5,)
    assert window.take() == ()


def test_the_confidence_window_counts_blanks_once_too_many_are_skipped() -> None:
    from pensieve.engine.text import ConfidenceWindow

    window = ConfidenceWindow(1)
    for _ in range(ConfidenceWindow.MAX_BLANK):
        window.push(b"\n", -0.1)
    window.push(b" ", -0.2)  # the window must fill within the tokens the worker measured
    assert window.take() == (-0.2,)


def test_a_trimmed_answer_start_is_trimmed_alike_in_token_bytes_and_alternatives() -> None:
    # A chat answer " Hi!" is sent as "Hi!": its first token keeps token == decoded bytes, and the
    # alternatives at that position lose the same leading space (OpenAI's contract: tokens join to the content).
    first = TokenLogprob(" Hi", -1.5, tuple(b" Hi"), ((" Hi", -1.5, tuple(b" Hi")), ("\n", -2.0, tuple(b"\n"))))
    bang = TokenLogprob("!", -0.1, tuple(b"!"))
    trimmer = EdgeWhitespaceTrimmer()
    text = trimmer.push(" Hi!")
    aligned = aligned_logprobs([first, bang], text, first=True)
    assert "".join(token.token for token in aligned) == text == "Hi!"
    for token in aligned:
        assert bytes(token.bytes).decode() == token.token
        assert all(bytes(raw).decode() == alt for alt, _, raw in token.top)
    assert [alt for alt, _, _ in aligned[0].top] == ["Hi", ""]
    assert aligned[1] is bang
    # Later chunks are left alone.
    assert aligned_logprobs([first], " Hi", first=False) == (first,)
