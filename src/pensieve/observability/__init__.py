"""What the server reports about itself: logging set-up, Prometheus metrics, the server process's figures,
request ids and the access log.

Nothing here makes decisions: the accounting recorder (`pensieve.burst.accounting`) and the model pool's
crash hook feed `Metrics`, the admin and `/api/ps` routes read `process`, the CLI calls
`logging.configure_logging`, and `app.py` puts `request_id.RequestContextMiddleware` outside everything.
"""

from pensieve.observability.metrics import Metrics
from pensieve.observability.process import ProcessClock, process_rss_bytes, server_rss_bytes

__all__ = ["Metrics", "ProcessClock", "process_rss_bytes", "server_rss_bytes"]
