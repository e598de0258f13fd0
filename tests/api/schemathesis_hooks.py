"""Schemathesis hooks for tests/api/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS):
besides the values the OpenAPI schema describes, every number the API reads from a path, a query
string, a cursor or a header is also sent as what Python would take for a number and the API
must not: non-ASCII digits ('²'.isdigit() is true, int('٣') is 3), the spellings pydantic
stretches ('+1', '1_0', '1.0'), and the bounds of PostgreSQL's integer and bigint and one past
them. Every answer must still be a 2xx or a 4xx."""

from __future__ import annotations

import base64
from typing import Any

import schemathesis
from hypothesis import strategies as st

INT_MAX, BIGINT_MAX = 2**31 - 1, 2**63 - 1
# Most telling first: hypothesis draws early items of a sampled list more often.
NON_ASCII_DIGITS = ["²", "٣", "１", "𝟙", "߁", "½", "١٢٣"]
BEYOND = [str(2**64), str(BIGINT_MAX + 1), "9" * 40, str(INT_MAX + 1), "-1", "+1", "1_0", "1.0"]
BOUNDS = [str(BIGINT_MAX), str(INT_MAX), "0", "1", "-0", "1e3", "0x10", ""]
NUMBERS = [*NON_ASCII_DIGITS, *BEYOND, *BOUNDS]
# A header travels in Latin-1: '²' (0xB2) is the non-ASCII digit it can carry.
HEADER_NUMBERS = ["²", "1²", *BEYOND, *BOUNDS[:-1]]
# Not "": an empty path segment is another route's path, not a number of this one.
PATH_NUMBERS = [n for n in NUMBERS if n]

NUMERIC_PATH = ("deployment_id", "template_id", "user_id")
NUMERIC_QUERY = ("after", "limit", "run", "template_id", "cursor")
NUMERIC_HEADERS = ("Last-Event-ID", "X-Provisio-Timestamp")


def _hostile(
    values: dict[str, Any] | None,
    declared: Any,
    names: tuple[str, ...],
    choices: list[str],
    *,
    often: bool = True,
) -> st.SearchStrategy[dict[str, Any] | None]:
    """`values` as generated, or with one declared numeric parameter replaced (one only: a bad
    `run` would hide a bad timestamp behind its own 422): two draws in three when `often`, else
    one in three."""
    present = sorted(name for name in names if name in declared)
    if not present:
        return st.just(values)
    replaced = st.tuples(st.sampled_from(present), st.sampled_from(choices)).map(
        lambda pick: {**(values or {}), **_spelled(pick[0], pick[1])}
    )
    generated = st.just(values)
    if often:
        return st.one_of(replaced, replaced, generated)
    return st.one_of(generated, generated, replaced)


def _spelled(name: str, number: str) -> dict[str, str]:
    """The parameters that carry `number` as `name`: a cursor holds it inside base64, like the
    ones the API issues; a callback timestamp comes with a signature of the right shape, or the
    endpoint stops at the signature before it reads the timestamp."""
    if name == "cursor":
        return {name: base64.urlsafe_b64encode(f"id:{number}".encode()).decode()}
    if name == "X-Provisio-Timestamp":
        return {name: number, "X-Provisio-Signature": "sha256=" + "0" * 64}
    return {name: number}


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    declared = context.operation.path_parameters if context.operation else ()
    # Less often: pydantic already bounds path ids, and a refused id hides the rest of a case.
    return _hostile(path_parameters, declared, NUMERIC_PATH, PATH_NUMBERS, often=False)


@schemathesis.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> Any:
    declared = context.operation.query if context.operation else ()
    return _hostile(query, declared, NUMERIC_QUERY, NUMBERS)


@schemathesis.hook
def flatmap_headers(context: Any, headers: dict[str, Any] | None) -> Any:
    declared = context.operation.headers if context.operation else ()
    return _hostile(headers, declared, NUMERIC_HEADERS, HEADER_NUMBERS)
