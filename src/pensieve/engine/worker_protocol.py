"""The protocol between the server process and a model's worker process: jobs, events, messages, framing.

Both processes import this module. It needs only the standard library and `SamplingParams`: no
llama.cpp, no numpy, nothing that allocates at import.

Every message is a tuple of plain picklable values whose first item is its kind (a `ToWorker` or
`ToServer` constant, a plain str on the wire), sent with `Connection.send`:

    server -> worker   ("generate", Job)                          admit a request at the next step
                       ("cancel", rid)                            end a generation or an embedding now
                       ("embed", rid, [[token, ...], ...])        embed tokenized inputs, between steps
                       ("shutdown",)                              stop serving; the worker exits
    worker -> server   ("ready", {"window", "kv_size", "n_parallel"})   the model is loaded (first message)
                       ("load_error", message)                    it could not be; the worker exits
                       ("step", [TokenEvent | PromptEvent | DoneEvent, ...], (running, waiting, kv_cells),
                        (drafted, accepted))                      one decode step's events, then the load and
                                                                  the speculative draft tokens verified so far
                       ("embedded", rid, [[float, ...], ...] | None, error | None)
                                                                  an embedding request's vectors or error

A request's `rid` is chosen by the server and is unique per worker; a `cancel` of a request that has
already finished is ignored. The pipe closing is the remaining signal: the worker exits when the server
goes away, and the server fails the requests in flight when the worker dies.

Framing. The worker checks for commands between decode steps and the server reads the events of every
step, so reading the pipe is on the hot path. `Connection.poll()` builds and registers a new selector
on every call, and `Connection.recv()` reads a message with two system calls. Per step that is little,
but the server and the worker share the machine's cores with llama.cpp's threads, and on a 2-core
machine every bit of CPU they take preempts a thread that the other one then waits for at a barrier.
So the server reads whatever has arrived with one `os.read` and splits it into messages itself
(`MessageReader`), and the worker checks for commands with a `poll` object made once
(`command_waiting`). Sending stays `Connection.send` on both sides: its framing is a signed 32-bit
big-endian length (or -1 and an unsigned 64-bit length for payloads over 2 GiB), then the pickled
message. Unit tests round-trip real `Connection.send` output through the reader, so a change in
CPython's format shows up at once.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final, Literal

from pensieve.engine_api import SamplingParams

# --- message kinds ------------------------------------------------------------------------------------


class ToWorker:
    """Kinds of the messages the server process sends to a worker (the first item of the tuple)."""

    GENERATE: Final = "generate"
    CANCEL: Final = "cancel"
    EMBED: Final = "embed"
    SHUTDOWN: Final = "shutdown"


class ToServer:
    """Kinds of the messages a worker process sends to the server (the first item of the tuple)."""

    READY: Final = "ready"
    LOAD_ERROR: Final = "load_error"
    STEP: Final = "step"
    EMBEDDED: Final = "embedded"


# A message as it travels: its kind, then the kind's arguments (see the table above).
Message = tuple[Any, ...]
# The worker's load after a step: (sequences running, requests waiting, KV cells in use or reserved).
Load = tuple[int, int, int]
# How a request ended.
Finish = Literal["stop", "length", "cancelled", "error"]


# --- what the messages carry ------------------------------------------------------------------------


@dataclass
class Job:
    """A generation request as the worker receives it (token ids in, token ids out).

    Built in the server process (its `rid` is set by the worker client), run in the worker process.
    """

    rid: int
    prompt: list[int]
    params: SamplingParams
    max_tokens: int
    forbid_eog_first: bool = False
    # Also banned as the first token (a chat format's own turn break: see LocalEngine._first_token_ban).
    ban_first: tuple[int, ...] = ()
    top_logprobs: int = -1  # -1: none; 0: the sampled token's; n: also the n likeliest
    confidence_tokens: int = 0  # measure the sampled token's log-probability for this many first tokens anyway
    grammar: str | None = None
    cache_prompt: bool = True  # False: reuse no cached prefix; the whole prompt is computed
    cache_partition: str = ""  # only a slot last used by the same partition (API key) may lend its prefix
    # -1: no prompt scoring; n >= 0: measure every prompt token's log-probability and its n likeliest
    # alternatives (PromptEvents). A scoring job computes its whole prompt: a cached prefix has no logits.
    score_prompt: int = -1
    speculative: bool = True  # draft tokens by prompt lookup and verify them in the same step (scheduler.py)


@dataclass(frozen=True)
class TokenEvent:
    """One sampled token of a request, with its log-probabilities when asked for.

    Made by the scheduler in the worker process, read in the server process.
    """

    rid: int
    token: int
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()
    # On a request's first token: prompt tokens reused from the cache (the DoneEvent says it too, but a
    # request the server stops early, at a stop sequence, never receives its DoneEvent).
    cached_tokens: int = 0


# One prompt token's score: its log-probability and the likeliest alternatives (token, log-probability).
PromptScore = tuple[float, tuple[tuple[int, float], ...]]


@dataclass(frozen=True)
class PromptEvent:
    """The scores of the prompt tokens one step computed, in prompt order (a scoring job only).

    The first of a request's PromptEvents starts at the prompt's second token: the first has no context
    to be predicted from. Made by the scheduler in the worker process, read in the server process.
    """

    rid: int
    scores: tuple[PromptScore, ...]


@dataclass(frozen=True)
class DoneEvent:
    """A request ended: why, and its token counts (`cached` prompt tokens were reused, not computed).

    Made by the scheduler in the worker process, read in the server process.
    """

    rid: int
    finish: Finish
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    error: str | None = None


Event = TokenEvent | PromptEvent | DoneEvent


@dataclass(frozen=True)
class WorkerFacts:
    """What the worker reports once the model is loaded; on the wire, the "ready" message's dict of these
    fields (made in the worker process by `ready_message`, read in the server by `WorkerFacts(**facts)`)."""

    window: int  # tokens one request may use
    kv_size: int  # KV cells shared by all sequences
    n_parallel: int  # sequences decoded together


def ready_message(facts: WorkerFacts) -> Message:
    """The worker process's first message once its model is loaded."""
    return (ToServer.READY, {"window": facts.window, "kv_size": facts.kv_size, "n_parallel": facts.n_parallel})


# --- framing ------------------------------------------------------------------------------------------

READ_SIZE = 1 << 18  # a step's events are ~100 bytes a sequence; embeddings may take several reads
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


class MessageReader:
    """Reassembles the messages of one Connection from raw reads of its file descriptor (server process)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def read_available(self) -> list[Message]:
        """One read of what has arrived, as whole messages (call it when the descriptor is readable).

        Runs in the server process, in its event loop. EOFError when the other end has closed the pipe.
        """
        chunk = os.read(self._fd, READ_SIZE)
        if not chunk:
            raise EOFError("the pipe was closed")
        self._buffer += chunk
        return self._whole_messages()

    def _whole_messages(self) -> list[Message]:
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
    """A check 'is a message waiting?' for `conn` that costs one system call (Connection.poll off POSIX).

    Runs in the worker process, between decode steps.
    """
    if not hasattr(select, "poll"):
        return conn.poll
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return lambda: bool(poller.poll(0))
