"""Logging set-up and other operational plumbing."""
