from fastapi.testclient import TestClient

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks_sync

from .app import Mailer, create_app


def test_signup_sends_a_welcome_email() -> None:
    mailer = Mailer()
    app = create_app(mailer)

    with TestClient(app) as client:  # the `with` block runs the lifespan: tasks work
        client.post("/signup", params={"email": "grace@example.com"})
        client.post("/signup", params={"email": "alan@example.com"})

        wait_for_tasks_sync(client)

        stats = get_tasks(app).stats()
        assert stats.succeeded == 4
        assert stats.failed == 0

    assert [to for to, _ in mailer.sent] == ["grace@example.com", "alan@example.com"]
