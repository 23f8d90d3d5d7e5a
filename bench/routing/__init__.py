"""The routing bench's parts: a checkable task set (tasks.py) and the routing-quality figures (metrics.py)."""
