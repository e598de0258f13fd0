"""What each process of the embedded stack is told: its environment, with only its own secrets.

The worker hands out callback tokens and drives Jenkins; the API signs sign-ins and checks
callbacks; neither needs the first admin's password, which only the stack uses to seed. A secret
the user exported for one of them (`PROVISIO_SECRET_KEY=... make dev`) reaches no other.
"""

from __future__ import annotations

from collections.abc import Mapping

from settings import Settings

ENV_PREFIX = "PROVISIO_"
# The settings that hold secrets are the ones kept out of repr (settings.py): a secret added
# there is withheld from every child that is not given it here.
SECRET_SETTINGS = frozenset(
    name for name, field in Settings.model_fields.items() if field.repr is False
)


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def child_environment(base: Mapping[str, str], settings: Mapping[str, str]) -> dict[str, str]:
    """`base` without any secret setting (under any spelling: pydantic-settings matches names
    case-insensitively), then `settings` (setting name → value) as PROVISIO_ variables."""
    secret_names = {env_name(name) for name in SECRET_SETTINGS}
    env = {key: value for key, value in base.items() if key.upper() not in secret_names}
    env.update({env_name(name): value for name, value in settings.items()})
    return env
