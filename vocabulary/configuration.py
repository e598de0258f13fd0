"""A deployment's configuration after launch: which values are secrets, and what a change
changes, as history and webhooks show it (secrets masked).

A value is a secret when the template declares it so in its overrides schema (`writeOnly: true`
or `format: password`) or when its key says so (password, secret, token, ...). Masking shows
that a secret changed, never what it was or became; the API shows a deployment's secrets masked
too.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "********"
# Keys that name a secret whatever the template says: a template written without `writeOnly`
# must not put a database password into history in clear.
# The word ends the key or is followed by a non-letter: `db_password`, `API_KEY`, `tokens`, but
# not `passage_count`. The pattern is JavaScript's too (the UI's form reads it).
SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential)s?(?![a-z])",
    re.IGNORECASE,
)


def declared_secrets(overrides: Any) -> list[str]:
    """The keys a template's overrides schema marks secret (`writeOnly` or `format: password`)."""
    if not isinstance(overrides, dict):
        return []
    return sorted(
        key
        for key, schema in overrides.items()
        if isinstance(schema, dict)
        and (schema.get("writeOnly") is True or schema.get("format") == "password")
    )


def is_secret(key: str, secret_keys: list[str]) -> bool:
    return key in secret_keys or SECRET_KEY.search(key) is not None


def shown(key: str, value: Any, secret_keys: list[str]) -> Any:
    return MASK if is_secret(key, secret_keys) and value is not None else value


def masked(configuration: dict[str, Any], overrides: Any) -> dict[str, Any]:
    """A deployment's configuration as the API shows it: its secrets (as its template's
    overrides declare them, or as their keys say) masked. Only its runs see the values."""
    secret_keys = declared_secrets(overrides)
    return {key: shown(key, value, secret_keys) for key, value in configuration.items()}


def configuration_changes(
    current: dict[str, Any], asked: dict[str, Any], secret_keys: list[str]
) -> list[dict[str, Any]]:
    """Each key whose value `asked` changes, in key order: `{key, old, new}` with secrets
    masked (`old` is None for a key the configuration did not have)."""
    return [
        {
            "key": key,
            "old": shown(key, current.get(key), secret_keys),
            "new": shown(key, asked[key], secret_keys),
        }
        for key in sorted(asked)
        if key not in current
        or current[key] != asked[key]
        or type(current[key]) is not type(asked[key])
    ]


def describe_changes(changes: list[dict[str, Any]]) -> str:
    """ "port 5432→5433, password ********→********": a change as history's message says it."""
    return ", ".join(f"{c['key']} {_text(c['old'])}→{_text(c['new'])}" for c in changes)


def _text(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value != MASK:
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    return str(value)
