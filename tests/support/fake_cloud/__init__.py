"""A fake cloud provider: a real OpenAI-compatible HTTP server on loopback, for the suites and benches.

`FakeCloud` runs a `ThreadingHTTPServer` on 127.0.0.1 (a free port picked by the OS) in a background
thread. Every connection is served by its own daemon thread, so a hanging request never blocks the others.

What it does:

- `POST /v1/chat/completions` and `POST /v1/completions` answer by echoing the last user message (or the
  prompt) as ``"Echo: <text>"``, streamed (SSE over chunked transfer encoding) or not, with deterministic
  token counts. `max_tokens` is ignored on purpose: tests rely on the full text coming back. Streamed
  answers carry logprobs when asked (`logprobs` / `top_logprobs`): every echoed piece counts as one token
  of log-probability `ECHO_LOGPROB`, with `ALTERNATIVE` as its runner-up.
- Given a `responder` (a function of the request body), it answers with that function's text instead of
  the echo: the routing bench's oracle cloud answers each of its prompts with the known right answer.
- `GET /v1/models` (and `GET /v1/models/<id>`) list the configured models.
- Every request on a generation endpoint is recorded in `requests`, faulted or not.
- `set_fault` queues faults for the next generation requests: an HTTP status, a 429 with `Retry-After`,
  a hang, a connection dropped mid-stream, added latency.

Faults and the request log only concern the two generation endpoints; `/v1/models` is always answered
normally (after the API key check).

Example::

    fake = FakeCloud(api_key="sk-test")
    fake.start()
    client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
    fake.set_fault(status=500)
    ...
    fake.stop()
"""

from support.fake_cloud.bodies import ALTERNATIVE, ECHO_LOGPROB, chat_prompt_tokens, word_pieces
from support.fake_cloud.server import FakeCloud

__all__ = ["ALTERNATIVE", "ECHO_LOGPROB", "FakeCloud", "chat_prompt_tokens", "word_pieces"]
