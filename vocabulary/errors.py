"""Error types the workflow and the API recognise by name (ApplicationError.type)."""

VALIDATION_FAILED = "DeploymentValidationError"
DUPLICATE_NAME = "DuplicateDeploymentName"
UNSAFE_VARIABLES = "UnsafeVariables"
# The workflow refuses these without retrying: no retry can change the answer.
REJECTIONS = (VALIDATION_FAILED, DUPLICATE_NAME)
# An operation the deployment's current status does not allow (the API's 409).
OPERATION_REFUSED = "OperationRefused"
