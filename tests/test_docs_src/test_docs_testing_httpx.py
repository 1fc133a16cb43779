"""docs/testing.md: the httpx + LifespanManager example test, collected and run from here."""

from docs_src.testing.test_with_httpx import anyio_backend, test_signup_sends_a_welcome_email

__all__ = ["anyio_backend", "test_signup_sends_a_welcome_email"]
