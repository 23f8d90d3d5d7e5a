"""Pensieve: a local small-language-model server that speaks the OpenAI API."""

__version__ = "0.1.0"
