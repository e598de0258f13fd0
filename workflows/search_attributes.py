"""Custom search attributes that make deployments findable in the Temporal UI.

They must be registered on the server before a workflow uses them: the dev stack passes them to
`temporal server start-dev --search-attribute`, docker-compose registers them once.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

DEPLOYMENT_ID = SearchAttributeKey.for_int("DeploymentId")
DEPLOYMENT_STATUS = SearchAttributeKey.for_keyword("DeploymentStatus")
TEMPLATE_NAME = SearchAttributeKey.for_keyword("TemplateName")
SERVICE_TYPE = SearchAttributeKey.for_keyword("ServiceType")
OWNER = SearchAttributeKey.for_keyword("Owner")

ALL = (DEPLOYMENT_ID, DEPLOYMENT_STATUS, TEMPLATE_NAME, SERVICE_TYPE, OWNER)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    types = {"INT": "Int", "KEYWORD": "Keyword"}
    flags = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={types[key.indexed_value_type.name]}"]
    return flags
