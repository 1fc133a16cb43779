import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from fastapi_tasks import Tasks, add_tasks


def connect(path: str) -> sqlite3.Connection:
    # FastAPI may run a `def` dependency and a `def` endpoint on different threads.
    return sqlite3.connect(path, check_same_thread=False)


def get_db(request: Request) -> Iterator[sqlite3.Connection]:
    # The request's connection: opened for this request, closed when the request is over.
    with closing(connect(request.state.db_path)) as conn:
        yield conn


Db = Annotated[sqlite3.Connection, Depends(get_db)]


def record_login(db_path: str, user_id: int) -> None:
    # The task opens (and closes) a connection of its own: it may run after the request's
    # connection is gone, and on another thread.
    with closing(connect(db_path)) as conn, conn:
        conn.execute("INSERT INTO logins (user_id) VALUES (?)", (user_id,))


def create_app(db_path: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        with closing(connect(db_path)) as conn, conn:
            conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
            conn.execute("CREATE TABLE IF NOT EXISTS logins (user_id INTEGER)")
        yield {"db_path": db_path}  # share how to connect, not a connection

    app = FastAPI(lifespan=lifespan)
    add_tasks(app)

    @app.post("/users/{name}/login")
    def login(name: str, request: Request, db: Db, tasks: Tasks) -> dict[str, int]:
        with db:
            user_id = db.execute("INSERT INTO users (name) VALUES (?)", (name,)).lastrowid
        assert user_id is not None  # an INSERT always sets it
        # Pass plain values (the path, the id), never `db` itself.
        tasks.after_response.schedule(record_login, request.state.db_path, user_id)
        return {"user_id": user_id}

    return app
