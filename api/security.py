"""Password hashing (argon2id) and signed, short-lived access tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

ALGORITHM = "HS256"
password_hash = PasswordHash((Argon2Hasher(),))
# Verified against when the username is unknown, so both paths take the same time.
_DUMMY_HASH = password_hash.hash("provisio-dummy-password")


def hash_password(password: str) -> str:
    return password_hash.hash(password)


def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """(valid, new hash if the stored one uses outdated parameters)."""
    if hashed is None:
        password_hash.verify(password, _DUMMY_HASH)
        return False, None
    return password_hash.verify_and_update(password, hashed)


def create_access_token(user_id: int, secret_key: str, minutes: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=minutes)}
    return jwt.encode(claims, secret_key, algorithm=ALGORITHM)


def user_id_from_token(token: str, secret_key: str) -> int | None:
    """The token's user id, or None when it is forged, tampered with or expired."""
    try:
        claims = jwt.decode(
            token, secret_key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
        return int(claims["sub"])
    except (jwt.InvalidTokenError, ValueError):
        return None
