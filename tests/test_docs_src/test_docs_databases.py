"""docs/databases.md: a task opens its own database connection."""

import sqlite3
from contextlib import closing

import pytest

from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_task_writes_with_its_own_connection(load_example, serve, tmp_path) -> None:
    example = load_example("docs_src.databases.sqlite_tasks")
    db_path = str(tmp_path / "app.db")
    app = example.create_app(db_path)
    async with serve(app) as client:
        assert (await client.post("/users/ada/login")).json() == {"user_id": 1}
        assert (await client.post("/users/grace/login")).json() == {"user_id": 2}
        await wait_for_tasks(app)
    with closing(sqlite3.connect(db_path)) as conn:
        logins = conn.execute("SELECT user_id FROM logins ORDER BY user_id").fetchall()
    assert logins == [(1,), (2,)]
