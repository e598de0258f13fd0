"""Error types the workflow and the API recognise by name (ApplicationError.type)."""

VALIDATION_FAILED = "DeploymentValidationError"
DUPLICATE_NAME = "DuplicateDeploymentName"
UNSAFE_VARIABLES = "UnsafeVariables"
# The workflow refuses these without retrying: no retry can change the answer.
REJECTIONS = (VALIDATION_FAILED, DUPLICATE_NAME)
# An operation the deployment's current status does not allow (the API's 409).
OPERATION_REFUSED = "OperationRefused"
# A lease extension the deployment's lease does not allow (past max_lease_s; the API's 422).
LEASE_REFUSED = "LeaseRefused"
# A change the deployment does not allow (a shrink, an unknown disk, nothing changed; the API's
# 422).
CHANGE_REFUSED = "ChangeRefused"
# An approval the decider may not give: the requester deciding on their own deployment (403).
APPROVAL_FORBIDDEN = "ApprovalForbidden"
