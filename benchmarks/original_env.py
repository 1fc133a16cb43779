"""The virtualenv holding ``fastapi-tasks==0.1.0`` (the original library) for side-by-side runs.

It lives in ``benchmarks/.venv-original`` (git-ignored) because 0.1.0 has the same import name
as this repository's package. Its framework packages are pinned to the versions of the
interpreter running the benchmark, so both libraries run on the same FastAPI, Starlette, anyio
and uvicorn. Everything comes from PyPI through pip; a failure is reported, never raised.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["ORIGINAL_VERSION", "VENV_DIR", "ensure_original_env"]

ORIGINAL_VERSION = "0.1.0"
VENV_DIR = Path(__file__).resolve().parent / ".venv-original"
#: Packages whose versions the original's venv copies from this interpreter.
PINNED = ("fastapi", "starlette", "pydantic", "anyio", "uvicorn", "httpx", "asgi-lifespan")

_PROBE = """
import importlib.metadata as m, json
import fastapi_tasks, uvicorn, httpx, asgi_lifespan
names = ["fastapi-tasks", *{pinned!r}]
print(json.dumps({{name: m.version(name) for name in names}}))
"""


def _python() -> Path:
    return VENV_DIR / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _probe(python: Path) -> dict[str, str] | None:
    """Versions installed in the venv, or ``None`` if something needed is missing."""
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE.format(pinned=list(PINNED))],
            cwd=VENV_DIR.parent,  # no fastapi_tasks folder here: the venv's own copy is used
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    versions: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return versions


def _wanted() -> dict[str, str]:
    wanted = {"fastapi-tasks": ORIGINAL_VERSION}
    for name in PINNED:
        try:
            wanted[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return wanted


def _pip_install(python: Path, requirements: list[str], log: Callable[[str], None]) -> bool:
    log(f"pip install {' '.join(requirements)}")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        cwd=VENV_DIR.parent,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        log("pip failed:\n" + "\n".join(done.stderr.strip().splitlines()[-8:]))
    return done.returncode == 0


def ensure_original_env(log: Callable[[str], None]) -> tuple[str | None, str]:
    """Create or update the venv. Returns ``(python, message)``; ``python`` is ``None`` when
    the original library could not be installed (``message`` says why)."""
    wanted = _wanted()
    python = _python()
    try:
        if python.exists() and _probe(python) == wanted:
            return str(python), f"reusing {VENV_DIR.name}"
        if not python.exists():
            log(f"creating {VENV_DIR} with {sys.executable} -m venv")
            subprocess.run(
                [sys.executable, "-m", "venv", str(VENV_DIR)],
                check=True,
                timeout=300,
                capture_output=True,
                env=_clean_env(),
            )
        pinned = [f"{name}=={version}" for name, version in wanted.items()]
        loose = [f"fastapi-tasks=={ORIGINAL_VERSION}", "uvicorn", "httpx", "asgi-lifespan"]
        if not _pip_install(python, pinned, log) and not _pip_install(python, loose, log):
            return None, f"could not install fastapi-tasks=={ORIGINAL_VERSION} from PyPI"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not set up {VENV_DIR.name}: {exc}"
    installed = _probe(python)
    if installed is None or installed.get("fastapi-tasks") != ORIGINAL_VERSION:
        return None, f"{VENV_DIR.name} does not import fastapi-tasks {ORIGINAL_VERSION}"
    differing = {k: v for k, v in installed.items() if wanted.get(k) != v}
    note = f" (versions differ from this interpreter: {differing})" if differing else ""
    return str(python), f"installed into {VENV_DIR.name}{note}"
