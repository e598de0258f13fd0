"""Who may do what: the three roles."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything, every user's deployments, users and templates
    OPERATOR = "operator"  # launches and operates their own deployments
    VIEWER = "viewer"  # reads their own


ROLES = tuple(role.value for role in Role)
