"""HTTP glue: one router per resource, dependencies, SSE framing, error mapping; no business logic."""
