"""Error types the workflow and the API recognise by name."""

VALIDATION_FAILED = "DeploymentValidationError"
DUPLICATE_NAME = "DuplicateDeploymentName"
UNSAFE_VARIABLES = "UnsafeVariables"
