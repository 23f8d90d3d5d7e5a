"""What the server reports about itself: logging set-up, Prometheus metrics, the server process's figures.

Nothing here makes decisions: the accounting recorder (`pensieve.burst.accounting`) feeds `Metrics`,
the admin and `/api/ps` routes read `process`, the CLI calls `logging.configure_logging`.
"""

from pensieve.observability.metrics import Metrics
from pensieve.observability.process import ProcessClock, process_rss_bytes, server_rss_bytes

__all__ = ["Metrics", "ProcessClock", "process_rss_bytes", "server_rss_bytes"]
