from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from fastapi_tasks import Tasks, add_tasks

app = FastAPI()
add_tasks(app)

archive: dict[str, list[str]] = {}


async def archive_transcript(room: str, lines: list[str]) -> None:
    archive[room] = list(lines)


@app.websocket("/rooms/{room}")
async def chat_room(websocket: WebSocket, room: str, tasks: Tasks) -> None:
    await websocket.accept()
    lines: list[str] = []
    # Released when this function returns or the client disconnects: once per session.
    tasks.after_response.schedule(archive_transcript, room, lines)
    try:
        while True:
            text = await websocket.receive_text()
            lines.append(text)
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect:
        pass  # the client left: the transcript is archived
