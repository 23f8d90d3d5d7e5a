"""Cheap reading of a multiprocessing pipe on the hot path of every decode step.

`Connection.poll()` builds and registers a new selector on every call, and `Connection.recv()` reads a
message with two system calls. Per step that is little, but the server and the model worker share the
machine's cores with llama.cpp's threads, and on a 2-core machine every bit of CPU they take preempts a
thread that the other one then waits for at a barrier. So the server reads whatever has arrived with
one `os.read` and splits it into messages itself, and the worker checks for commands with a `poll`
object made once.

The framing is `multiprocessing.connection.Connection`'s: a signed 32-bit big-endian length (or -1 and
an unsigned 64-bit length for payloads over 2 GiB), then the pickled message. Unit tests round-trip
real `Connection.send` output through the reader, so a change in CPython's format shows up at once.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

READ_SIZE = 1 << 18  # a step's events are ~100 bytes a sequence; embeddings may take several reads
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


class MessageReader:
    """Reassembles the messages of one Connection from raw reads of its file descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def read_available(self) -> list[Any]:
        """One read of what has arrived, as whole messages (call it when the descriptor is readable).

        EOFError when the other end has closed the pipe.
        """
        chunk = os.read(self._fd, READ_SIZE)
        if not chunk:
            raise EOFError("the pipe was closed")
        self._buffer += chunk
        return self._whole_messages()

    def _whole_messages(self) -> list[Any]:
        buffer, offset, messages = self._buffer, 0, []
        while len(buffer) - offset >= _SHORT.size:
            (size,) = _SHORT.unpack_from(buffer, offset)
            header = _SHORT.size
            if size == -1:
                if len(buffer) - offset < _SHORT.size + _LONG.size:
                    break
                (size,) = _LONG.unpack_from(buffer, offset + _SHORT.size)
                header += _LONG.size
            end = offset + header + size
            if len(buffer) < end:
                break
            messages.append(pickle.loads(bytes(buffer[offset + header : end])))
            offset = end
        del buffer[:offset]
        return messages


def command_waiting(conn: Connection) -> Callable[[], bool]:
    """A check 'is a message waiting?' for `conn` that costs one system call (Connection.poll off POSIX)."""
    if not hasattr(select, "poll"):
        return conn.poll
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return lambda: bool(poller.poll(0))
