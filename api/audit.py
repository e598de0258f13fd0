"""Recording the audit trail from a request: who (the signed-in user), from where (the client's
address as `api/client_address.py` works it out, honouring trusted proxies) and in which
transaction (the request's session, committed at the edge).

`AuditDep` gives a route an `AuditTrail`; `await audit.record(action, target_id, before=...,
after=...)` writes one entry (`db.audit.record_audit`). A route whose change is a database write
records in the same transaction; a route whose operation is a Temporal Update records after the
update returned (a refused one raised before), keyed by `request_key` so that a retry with the
same Idempotency-Key, which Temporal runs once, is recorded once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.client_address import request_client_address
from api.deps import CurrentUser, SessionDep, SettingsDep
from db.audit import record_audit
from db.models import Template, User
from vocabulary.audit import AuditAction
from vocabulary.configuration import masked


@dataclass(frozen=True)
class AuditTrail:
    session: AsyncSession
    actor: User
    address: str

    async def record(
        self,
        action: AuditAction,
        target_id: int,
        *,
        before: Any,
        after: Any,
        key: str | None = None,
    ) -> int | None:
        """One entry for `action` on `target_id` (its type is the action's); None when `key`
        was recorded already."""
        return await record_audit(
            self.session,
            actor=self.actor,
            address=self.address,
            action=action,
            target_type=action.target,
            target_id=target_id,
            before=before,
            after=after,
            key=key,
        )


async def get_audit_trail(
    request: Request, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> AuditTrail:
    return AuditTrail(session, user, request_client_address(request, settings.trusted_proxies))


AuditDep = Annotated[AuditTrail, Depends(get_audit_trail)]


def request_key(
    action: AuditAction, target_id: int, user: User, idempotency_key: str | None
) -> str | None:
    """The entry's key for a request sent with an Idempotency-Key: the same user, key, action and
    target name the same operation (Temporal's update ids are per workflow, like this)."""
    if idempotency_key is None:
        return None
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"{action.value}:{target_id}:u{user.id}:{digest}"


def deployment_snapshot(detail: dict[str, Any]) -> dict[str, Any]:
    """What an entry keeps of a deployment's detail (its secrets already masked by the read),
    with its approval (`{state, by, at, comment}`) when it has one."""
    snapshot = {
        "name": detail["deployment_name"],
        "status": detail["status"],
        "attempt": detail["attempt"],
        "expires_at": detail.get("expires_at"),
        "configuration": detail["configuration"],
        "disks": {
            disk["mount_point"]: {
                "size_gb": disk["size_gb"],
                "filesystem_type": disk["filesystem_type"],
            }
            for disk in detail["disk_allocations"]
        },
    }
    if detail.get("approval") is not None:
        snapshot["approval"] = detail["approval"]
    return snapshot


async def _overrides(session: AsyncSession, template_id: int) -> Any:
    return await session.scalar(
        select(Template.configuration["provisio"]["overrides"]).where(Template.id == template_id)
    )


async def masked_configuration(
    session: AsyncSession, template_id: int, configuration: dict[str, Any]
) -> dict[str, Any]:
    """`configuration` with the values its template's overrides (or their keys) call secrets
    masked, as the deployment's detail shows it (masking a masked value changes nothing)."""
    return masked(configuration, await _overrides(session, template_id))


async def asked_change(
    session: AsyncSession,
    before: dict[str, Any],
    template_id: int,
    disks: list[tuple[str, int]],
    configuration: dict[str, Any],
) -> dict[str, Any]:
    """The snapshot a change asks for: `before` with the asked sizes and values, the values
    masked where the template's overrides (or their keys) say they are secrets."""
    overrides = await _overrides(session, template_id)
    asked = {
        mount_point: {**before["disks"].get(mount_point, {}), "size_gb": size_gb}
        for mount_point, size_gb in disks
    }
    return {
        "disks": {**before["disks"], **asked},
        "configuration": {**before["configuration"], **masked(configuration, overrides)},
    }
