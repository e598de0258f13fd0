"""The embedded stack's data directory (`var/`) is private: its secrets, Temporal's database and
the logs (which carry deployment data) are readable by the user who runs the stack only.

Two layers: the stack sets a umask of 077 that its children inherit, so whatever they create is
0600 / 0700 from the start; and at each start the directory, and what an older version left
readable in it, is tightened explicitly.

One exception: run as root, embedded PostgreSQL runs its server as an unprivileged user of its
own (PostgreSQL refuses to run as root), which must traverse `var/` to reach `var/postgres`. Then
`var/` belongs to that user's group with mode 0710: that user may pass through it, and no other.
"""

from __future__ import annotations

import os
import pwd
import secrets
from pathlib import Path

PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
# var/ when root: owner everything, the PostgreSQL user's group may only pass through.
TRAVERSE_DIR_MODE = 0o710
PRIVATE_FILE_MODE = 0o600


def use_private_umask() -> None:
    """Everything this process and its children create is for the owner only."""
    os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path, *, traversed_by: str | None = None) -> None:
    """Create `path` if missing and make it the owner's only, or passable by `traversed_by`'s
    group (see the module docstring)."""
    path.mkdir(parents=True, exist_ok=True)
    if traversed_by is None:
        path.chmod(PRIVATE_DIR_MODE)
        return
    os.chown(path, -1, pwd.getpwnam(traversed_by).pw_gid)
    path.chmod(TRAVERSE_DIR_MODE)


def tighten_files(directory: Path) -> None:
    """Make the regular files directly in `directory` the owner's only (logs, the Temporal
    database and its journals, secrets), whatever mode an older version gave them."""
    for entry in directory.iterdir():
        if entry.is_file() and not entry.is_symlink():
            entry.chmod(PRIVATE_FILE_MODE)


def stable_secret(configured: str, path: Path) -> str:
    """`configured` if set, else the secret kept in `path`: made once, mode 0600 from its first
    byte (never written world-readable and then chmod-ed), the same at every start."""
    if configured:
        return configured
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        path.chmod(PRIVATE_FILE_MODE)
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
