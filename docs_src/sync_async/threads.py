import hashlib
import threading

from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks

app = FastAPI()
# At most 8 plain-function tasks run at once; more wait their turn (counted as "pending").
add_tasks(app, thread_limit=8)

thumbnails: dict[str, str] = {}
seen_threads: set[str] = set()


def make_thumbnail(name: str, data: bytes) -> None:
    # Plain `def`: blocking or CPU-heavy work. Runs in one of the runtime's own threads.
    seen_threads.add(threading.current_thread().name)
    thumbnails[name] = hashlib.sha256(data).hexdigest()[:12]


async def announce(name: str) -> None:
    # `async def`: runs on the event loop. Never block in here (no time.sleep, no requests).
    thumbnails.setdefault("announced", name)


@app.post("/images/{name}")
async def upload(name: str, tasks: Tasks) -> dict[str, str]:
    tasks.schedule(make_thumbnail, name, name.encode() * 1000)
    tasks.after_response.schedule(announce, name)
    return {"uploaded": name}


@app.post("/sync-endpoint/{name}")
def upload_from_a_def_endpoint(name: str, tasks: Tasks) -> dict[str, str]:
    # `def` endpoints run in FastAPI's thread pool; scheduling from them works the same way.
    tasks.schedule(make_thumbnail, name, b"raw bytes")
    return {"uploaded": name}
