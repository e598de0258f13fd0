"""The CLI against the real database: migrations, the first admin, users create."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from settings import PROJECT_ROOT, Settings


def provisio(
    settings: Settings, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PROVISIO_DATABASE_URL": settings.database_url, **env},
        timeout=120,
    )


async def test_migrate_creates_the_first_admin_once_and_users_create_adds_more(
    settings: Settings, api: httpx.AsyncClient
) -> None:
    first = provisio(settings, "migrate", PROVISIO_ADMIN_PASSWORD="first-admin-pw")
    assert first.returncode == 0, first.stderr
    again = provisio(settings, "migrate", PROVISIO_ADMIN_PASSWORD="another-password")
    assert again.returncode == 0, again.stderr
    login = await api.post(
        "/api/auth/token", data={"username": "admin", "password": "first-admin-pw"}
    )
    assert login.status_code == 200

    created = provisio(
        settings,
        "users",
        "create",
        "ops-1",
        "--role",
        "operator",
        "--password-stdin",
        stdin="ops-password\n",
    )
    assert created.returncode == 0, created.stderr
    login = await api.post(
        "/api/auth/token", data={"username": "ops-1", "password": "ops-password"}
    )
    me = await api.get(
        "/api/users/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.json()["role"] == "operator"

    duplicate = provisio(
        settings, "users", "create", "ops-1", "--password-stdin", stdin="ops-password\n"
    )
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
    short = provisio(settings, "users", "create", "ops-2", "--password-stdin", stdin="short\n")
    assert short.returncode != 0 and "at least 8" in short.stderr


def test_commands_refuse_to_run_without_a_database() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROVISIO_DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "worker"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0 and "PROVISIO_DATABASE_URL is not set" in result.stderr
