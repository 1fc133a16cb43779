"""A taskiq broker on a real Redis, imported by the web side (the test) and by a real
``taskiq worker`` process. Configured with FT_REDIS_URL and FT_OUT."""

import os
from pathlib import Path

from taskiq_redis import ListQueueBroker

broker = ListQueueBroker(os.environ.get("FT_REDIS_URL", "redis://127.0.0.1:6379"))


@broker.task
async def write_receipt(order_id: int) -> None:
    (Path(os.environ["FT_OUT"]) / f"receipt-{order_id}").write_text("sent")
