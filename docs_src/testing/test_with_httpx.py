import httpx
import pytest
from asgi_lifespan import LifespanManager

from fastapi_tasks.testing import wait_for_tasks

from .app import Mailer, create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # run the async tests on asyncio (the anyio pytest plugin reads this)


@pytest.mark.anyio
async def test_signup_sends_a_welcome_email() -> None:
    mailer = Mailer()
    app = create_app(mailer)

    # LifespanManager runs the app's lifespan, which starts (and later drains) the task runtime.
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/signup", params={"email": "ada@example.com"})
            assert response.status_code == 200

            await wait_for_tasks(app)  # every task scheduled so far has finished

    assert mailer.sent == [("ada@example.com", "Welcome!")]
    assert app.state.signup_stats == {"signups": 1}
