"""docs/durable.md: in-process and durable scheduling side by side."""

import pytest

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_the_durable_example(load_example, serve) -> None:
    example = load_example("docs_src.durable.app")
    async with serve(example.app) as client:
        assert (await client.post("/orders/5")).json() == {"order_id": 5}
        await wait_for_tasks(example.app)
        await example.broker.wait_all()  # the in-memory broker runs jobs in this process
        stats = get_tasks(example.app).stats()
    assert example.charged == [5]
    assert (stats.enqueued, stats.succeeded) == (1, 2)
