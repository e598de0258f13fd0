"""The audit trail's words: what was done (`AuditAction`) and to what kind of thing
(`AuditTarget`). Every layer writes and filters with these; the database's check constraint and
the UI's filter list are made from them."""

from __future__ import annotations

from enum import StrEnum


class AuditTarget(StrEnum):
    USER = "user"
    TEMPLATE = "template"
    DEPLOYMENT = "deployment"


class AuditAction(StrEnum):
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"  # role, enabled/disabled, quotas: one PATCH, one entry
    TEMPLATE_CREATE = "template.create"  # a new template or the next version of one
    TEMPLATE_DEACTIVATE = "template.deactivate"
    TEMPLATE_ACTIVATE = "template.activate"
    DEPLOYMENT_LAUNCH = "deployment.launch"
    DEPLOYMENT_CANCEL = "deployment.cancel"
    DEPLOYMENT_DESTROY = "deployment.destroy"
    DEPLOYMENT_RETRY = "deployment.retry"
    DEPLOYMENT_CHANGE = "deployment.change"  # a resize and/or new configuration values
    DEPLOYMENT_LEASE = "deployment.lease"  # an extension of its lease
    DEPLOYMENT_APPROVE = "deployment.approve"
    DEPLOYMENT_REJECT = "deployment.reject"

    @property
    def target(self) -> AuditTarget:
        return AuditTarget(self.value.split(".", 1)[0])


AUDIT_ACTIONS = tuple(action.value for action in AuditAction)
AUDIT_TARGETS = tuple(target.value for target in AuditTarget)
