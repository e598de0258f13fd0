"""What a configuration change says it changes, and which values are secrets."""

from __future__ import annotations

from vocabulary.configuration import (
    MASK,
    configuration_changes,
    declared_secrets,
    describe_changes,
    is_secret,
    masked,
)


def test_secrets_are_declared_or_named() -> None:
    overrides = {
        "replica_key": {"type": "string", "writeOnly": True},
        "pin": {"type": "string", "format": "password"},
        "port": {"type": "integer"},
        "odd": "not a schema",
    }
    secret_keys = declared_secrets(overrides)
    assert secret_keys == ["pin", "replica_key"]
    assert declared_secrets(None) == []
    for key in ("db_password", "API_KEY", "auth-token", "client_secrets", "ssh_private_key", "pin"):
        assert is_secret(key, secret_keys), key
    for key in ("port", "log_level", "passage_count", "tokenizer"):
        assert not is_secret(key, secret_keys), key


def test_a_change_lists_what_differs_with_secrets_masked() -> None:
    current = {"port": 5432, "ratio": 1, "debug": False, "db_password": "old-one"}
    asked = {"port": 5432, "ratio": 1.0, "debug": 0, "db_password": "new-one", "new_key": "x"}
    changes = configuration_changes(current, asked, [])
    # A JSON type change is a change (1 → 1.0, false → 0), an equal value is not.
    assert changes == [
        {"key": "db_password", "old": MASK, "new": MASK},
        {"key": "debug", "old": False, "new": 0},
        {"key": "new_key", "old": None, "new": "x"},
        {"key": "ratio", "old": 1, "new": 1.0},
    ]
    assert describe_changes(changes) == (
        "db_password ********→********, debug false→0, new_key (unset)→'x', ratio 1→1.0"
    )
    assert "new-one" not in str(changes) and "old-one" not in str(changes)


def test_the_api_view_masks_only_secrets() -> None:
    shown = masked({"port": 1, "token_ttl": 30, "label": "a"}, {"label": {"writeOnly": True}})
    assert shown == {"port": 1, "token_ttl": MASK, "label": MASK}
