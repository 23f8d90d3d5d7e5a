"""The worker protocol: message kinds, the ready message, and the server's pipe reader against real
multiprocessing Connection output (CPython's framing)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from pensieve.engine.worker_protocol import (
    READ_SIZE,
    DoneEvent,
    MessageReader,
    TokenEvent,
    ToServer,
    ToWorker,
    WorkerFacts,
    command_waiting,
    ready_message,
)


@pytest.fixture
def pipe() -> Iterator[tuple[Connection, Connection]]:
    reader_end, writer_end = multiprocessing.Pipe()
    yield reader_end, writer_end
    reader_end.close()
    writer_end.close()


def read_all(reader: MessageReader, count: int) -> list[object]:
    messages: list[object] = []
    while len(messages) < count:
        messages.extend(reader.read_available())
    return messages


def test_messages_sent_together_come_out_whole_and_in_order(pipe: tuple[Connection, Connection]) -> None:
    reader_end, writer_end = pipe
    sent = [("step", [TokenEvent(1, 42), DoneEvent(1, "stop", 5, 1, 0)], (0, 0, 6)), ("embedded", 3, None, "bad")]
    for message in sent:
        writer_end.send(message)
    assert read_all(MessageReader(reader_end.fileno()), len(sent)) == sent


def test_a_message_larger_than_one_read_is_reassembled(pipe: tuple[Connection, Connection]) -> None:
    reader_end, writer_end = pipe
    vectors = [[float(row * 640 + column) for column in range(640)] for row in range(200)]
    big = ("embedded", 7, vectors, None)
    assert len(pickle.dumps(big)) > 2 * READ_SIZE
    # The writer blocks once the socket buffer is full, so it runs beside the reading.
    sender = threading.Thread(target=writer_end.send, args=(big,))
    sender.start()
    received = read_all(MessageReader(reader_end.fileno()), 1)
    sender.join(30)
    assert received == [big]


def test_a_split_header_and_the_long_length_form_are_parsed(pipe: tuple[Connection, Connection]) -> None:
    reader_end, writer_end = pipe
    payload = pickle.dumps(("step", [], (1, 2, 3)))
    raw = struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload  # the >2 GiB form, made small
    reader = MessageReader(reader_end.fileno())
    os.write(writer_end.fileno(), raw[:7])  # cut inside the 8-byte length
    assert reader.read_available() == []
    os.write(writer_end.fileno(), raw[7:])
    assert reader.read_available() == [("step", [], (1, 2, 3))]


def test_a_closed_pipe_is_end_of_file(pipe: tuple[Connection, Connection]) -> None:
    reader_end, writer_end = pipe
    writer_end.close()
    with pytest.raises(EOFError):
        MessageReader(reader_end.fileno()).read_available()


def test_command_waiting_sees_a_message_and_a_closed_pipe(pipe: tuple[Connection, Connection]) -> None:
    reader_end, writer_end = pipe
    waiting = command_waiting(reader_end)
    assert not waiting()
    writer_end.send(("cancel", 4))
    assert waiting()
    assert reader_end.recv() == ("cancel", 4)
    assert not waiting()
    writer_end.close()
    assert waiting()  # end of file is "readable": the worker's recv() then ends its loop


def test_message_kinds_are_the_plain_strings_on_the_wire() -> None:
    to_worker = {ToWorker.GENERATE, ToWorker.CANCEL, ToWorker.EMBED, ToWorker.SHUTDOWN}
    to_server = {ToServer.READY, ToServer.LOAD_ERROR, ToServer.STEP, ToServer.EMBEDDED}
    assert to_worker == {"generate", "cancel", "embed", "shutdown"}
    assert to_server == {"ready", "load_error", "step", "embedded"}
    assert all(type(kind) is str for kind in to_worker | to_server)  # pickled as str: no class to import


def test_the_ready_message_carries_the_facts_as_a_dict(pipe: tuple[Connection, Connection]) -> None:
    reader_end, writer_end = pipe
    facts = WorkerFacts(window=2048, kv_size=4096, n_parallel=2)
    writer_end.send(ready_message(facts))
    kind, sent = reader_end.recv()
    assert (kind, sent) == ("ready", {"window": 2048, "kv_size": 4096, "n_parallel": 2})
    assert WorkerFacts(**sent) == facts


def test_the_protocol_imports_neither_llama_cpp_nor_numpy() -> None:
    # The server process imports it too; it must stay as light as the standard library.
    code = (
        "import sys, pensieve.engine.worker_protocol; "
        "print(sorted(m for m in ('llama_cpp', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
