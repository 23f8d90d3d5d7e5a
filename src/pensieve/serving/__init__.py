"""The serving layer: one class per generation endpoint turns a request body into engine requests once,
plans it with the route planner and owns the run (vLLM's serving_* layer). Routers in `pensieve.api` stay
thin: they parse, call a serving class and frame the HTTP response.
"""

from pensieve.serving.base import GenerationServing, PreparedRun, Streamed
from pensieve.serving.chat import ChatServing
from pensieve.serving.completions import CompletionServing

__all__ = ["ChatServing", "CompletionServing", "GenerationServing", "PreparedRun", "Streamed"]
