"""docs/testing.md: the TestClient example test, collected and run from here."""

from docs_src.testing.test_with_testclient import test_signup_sends_a_welcome_email

__all__ = ["test_signup_sends_a_welcome_email"]
