"""The library's logger. Every module logs through it, so one ``logging`` setting covers all."""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("fastapi_tasks")
