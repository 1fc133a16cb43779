import httpx
import pytest
from asgi_lifespan import LifespanManager

from fastapi_tasks.testing import capture_tasks

from .app import Mailer, count_signup, create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_signup_schedules_the_right_tasks() -> None:
    mailer = Mailer()
    app = create_app(mailer)

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with capture_tasks(app) as captured:  # record, don't run
                await client.post("/signup", params={"email": "ada@example.com"})

    # What was scheduled, and when it would have run:
    assert [c.func for c in captured.with_timing("now")] == [count_signup]
    [email] = captured.with_timing("after_response")
    assert email.task.args == ("ada@example.com", "Welcome!")
    assert mailer.sent == []  # nothing ran

    await captured.run()  # now run them, in order, right here
    assert mailer.sent == [("ada@example.com", "Welcome!")]
