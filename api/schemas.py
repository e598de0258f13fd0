"""Request and response bodies. Requests forbid unknown fields; responses never carry a hash."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from domain.validation import FILESYSTEMS, MAX_DISK_GB
from domain.webhook_urls import url_problem as webhook_url_problem
from vocabulary.approvals import MAX_APPROVAL_COMMENT, ApprovalState
from vocabulary.disks import DiskState
from vocabulary.leases import MAX_LEASE_S
from vocabulary.operations import Operation
from vocabulary.users import Role

# Ids within their column types, so an absurd id is a 422, not a database error.
INT_MAX, BIGINT_MAX = 2**31 - 1, 2**63 - 1
DeploymentId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
TemplateId = Annotated[int, Path(ge=1, le=INT_MAX)]
UserId = Annotated[int, Path(ge=1, le=INT_MAX)]
ScalarValue = str | int | float | bool
DeploymentName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
]
ConfigKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# A role's name as JSON gives it (strict models take no str for an enum otherwise).
RoleName = Annotated[Role, Field(strict=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class UserCreate(Strict):
    username: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{3,64}$")]
    password: Annotated[str, StringConstraints(min_length=8, max_length=256)]
    role: RoleName


QuotaLimit = Annotated[int, Field(ge=0, le=INT_MAX)]


class UserUpdate(Strict):
    """PATCH /api/users/{id}: each field absent leaves it as it is. `max_active_deployments`,
    `max_total_gb`: this user's own quota; null returns them to their role's default."""

    role: RoleName | None = None
    is_active: bool | None = None
    max_active_deployments: QuotaLimit | None = None
    max_total_gb: QuotaLimit | None = None


class QuotaPublic(BaseModel):
    """A user's quota as it applies now, and what they use (api/quotas.py)."""

    max_active_deployments: int | None = Field(
        description="How many deployments the user may hold at once (every one not cancelled, "
        "destroyed or rejected); their own limit, else their role's; null: no limit."
    )
    max_total_gb: int | None = Field(
        description="How many GB their deployments' disks may add up to; null: no limit."
    )
    active_deployments: int = Field(
        description="Their deployments not cancelled, destroyed or rejected (launches not "
        "recorded yet included)."
    )
    total_gb: int = Field(
        description="Their active deployments' disks, in GB (a resize in progress at its new "
        "sizes)."
    )


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: str
    created_at: datetime


class UserAdminView(UserPublic):
    """A user as an admin manages them (the row's fields: what the audit trail records)."""

    is_active: bool
    max_active_deployments: int | None = Field(
        description="This user's own limit as an admin set it; null: their role's default."
    )
    max_total_gb: int | None = Field(
        description="This user's own limit as an admin set it; null: their role's default."
    )


class UserAdminDetail(UserAdminView):
    """What the admin's user endpoints answer: the user with the quota that applies and their
    use."""

    quota: QuotaPublic


class UserMe(UserPublic):
    """The signed-in user as they see themselves: with their webhook's URL (never its secret)
    and their quota with what they use."""

    webhook_url: str | None
    quota: QuotaPublic


class UserMeUpdate(Strict):
    """PATCH /api/users/me. `webhook_url`: a URL sets it (with a new secret), null removes it
    (and its secret), absent leaves it; `rotate_webhook_secret`: a new secret for the URL."""

    webhook_url: str | None = None
    rotate_webhook_secret: bool = False

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_form(cls, url: str | None) -> str | None:
        if url is not None and (problem := webhook_url_problem(url)):
            raise ValueError(problem)
        return url


class UserMeUpdated(UserMe):
    webhook_secret: str | None = Field(
        default=None,
        description="The webhook's new secret, shown this once (when a URL was set or the secret"
        " rotated): receivers check each request's signature with it.",
    )


class DiskPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    disk_type: str
    size_gb: int
    mount_point: str
    volume_group: str
    logical_volume: str
    filesystem_type: str
    allocation_params: dict[str, Any]


class DeploymentDiskPublic(DiskPublic):
    state: DiskState
    state_changed_at: datetime


class TemplatePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    service_type: str
    version: int
    is_active: bool
    configuration: dict[str, Any]
    created_at: datetime
    disk_allocations: list[DiskPublic]


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class TemplateDiskIn(Strict):
    disk_type: Slug
    size_gb: Annotated[int, Field(strict=True)]
    mount_point: ShortText
    volume_group: ShortText
    logical_volume: ShortText
    filesystem_type: ShortText = "ext4"
    allocation_params: Annotated[dict[ConfigKey, ScalarValue], Field(max_length=16)] = {}


class TemplateCreate(Strict):
    name: Slug
    service_type: Slug
    # Omitted: the next version of this name.
    version: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] | None = None
    configuration: Annotated[dict[ConfigKey, Any], Field(max_length=64)] = {}
    disk_allocations: Annotated[list[TemplateDiskIn], Field(max_length=32)] = []


class DiskOverrideIn(Strict):
    mount_point: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    size_gb: Annotated[int, Field(ge=1, le=MAX_DISK_GB, strict=True)] | None = None
    filesystem_type: Literal[FILESYSTEMS] | None = None  # type: ignore[valid-type]


class DeploymentCreate(Strict):
    template_id: Annotated[int, Field(ge=1, le=INT_MAX, strict=True)]
    deployment_name: DeploymentName
    configuration: Annotated[dict[ConfigKey, ScalarValue], Field(max_length=64)] = {}
    disk_allocations: Annotated[list[DiskOverrideIn], Field(max_length=32)] = []


class DiskResizeIn(Strict):
    mount_point: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    size_gb: Annotated[int, Field(ge=1, le=MAX_DISK_GB, strict=True)]


class DeploymentChange(Strict):
    """PATCH /api/deployments/{id}: the new sizes of some of its disks, matched by mount point
    (grow only, within the template's bounds and cap), and/or configuration values to set
    (within the template's overrides); at least one of them."""

    disk_allocations: Annotated[list[DiskResizeIn], Field(max_length=32)] = []
    configuration: Annotated[dict[ConfigKey, ScalarValue], Field(max_length=64)] = {}

    @model_validator(mode="after")
    def _something(self) -> DeploymentChange:
        if not self.disk_allocations and not self.configuration:
            msg = "name a disk to grow (disk_allocations) or a value to set (configuration)"
            raise ValueError(msg)
        return self


class LeaseExtension(Strict):
    """`extend_s` after the current expiry, or a new `expires_at` (with its time zone): exactly
    one, and never past the template's `max_lease_s` from now."""

    extend_s: Annotated[int, Field(ge=1, le=MAX_LEASE_S, strict=True)] | None = None
    expires_at: Annotated[AwareDatetime, Field(strict=False)] | None = None

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """One time zone from here on: the workflow compares it with its own clock."""
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range") from None

    @model_validator(mode="after")
    def _exactly_one(self) -> LeaseExtension:
        if (self.extend_s is None) == (self.expires_at is None):
            raise ValueError("name exactly one of extend_s and expires_at")
        return self


class DeploymentSummary(BaseModel):
    id: int
    deployment_name: str
    status: str
    template_id: int
    template_name: str
    user_id: int
    username: str
    workflow_id: str
    created_at: datetime
    updated_at: datetime
    # When the lease ends and the deployment is destroyed (null: no lease).
    expires_at: datetime | None = None


class DeploymentPage(BaseModel):
    items: list[DeploymentSummary]
    next_cursor: str | None


class ApprovalDecision(Strict):
    """POST …/approve or …/reject: an optional comment, shown in history and the detail."""

    comment: Annotated[str, StringConstraints(max_length=MAX_APPROVAL_COMMENT)] | None = None


class ApprovalPublic(BaseModel):
    state: ApprovalState
    by: str | None
    at: datetime | None
    comment: str | None


class DeploymentDetail(DeploymentSummary):
    """The seed's "fetch deployment with details"."""

    service_type: str
    template_version: int
    configuration: dict[str, Any]
    # Any runner's job id: `local-…` for the local runner, `queue:N` then `build:N` for Jenkins.
    jenkins_job_id: str | None
    disk_allocations: list[DeploymentDiskPublic]
    temporal_url: str
    attempt: int
    retained_until: datetime | None
    # Null unless its template requires approval.
    approval: ApprovalPublic | None = None
    # What approving builds (check-mode run): disks, configuration (secrets masked), hosts.
    plan: dict[str, Any] | None = None
    # What the owner may do now (vocabulary.operations): the UI and the CLI offer exactly these.
    allowed_operations: list[Operation]
    # Whether POST …/lease may extend the lease now (vocabulary.leases): the UI offers it then.
    lease_extendable: bool = False
    # Whether PATCH may resize its disks now (vocabulary.operations.change_refusal).
    resizable: bool = False


class HistoryEntry(BaseModel):
    id: int
    status: str
    message: str
    details: dict[str, Any]
    attempt: int
    created_at: datetime


class ErrorBody(BaseModel):
    detail: Any


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors a router's endpoints answer with."""
    return {code: {"model": ErrorBody} for code in codes}
