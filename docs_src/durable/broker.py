"""The broker and the jobs, in one module imported by both sides:

- the web app (``docs_src/durable/redis_app.py``) enqueues with ``tasks.durable``;
- the worker runs the jobs: ``taskiq worker docs_src.durable.broker:broker``.
"""

import os

from taskiq_redis import ListQueueBroker

broker = ListQueueBroker(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
    socket_connect_timeout=2.0,  # how long an enqueue waits for a Redis host that does not answer
)


@broker.task
async def charge_card(order_id: int) -> None:
    """Runs on a taskiq worker process, not in the web app."""
