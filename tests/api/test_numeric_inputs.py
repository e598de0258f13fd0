"""Numbers from headers, query strings and cursors, over real HTTP: only ASCII digits within the
column's range are numbers; anything else is a 4xx with the error JSON, never a 500.

Python's str.isdigit() is true for '²' and '٣', and int() takes '٣' (3) and '１' (1) but raises on
'²': code that checked isdigit() and then called int() answered 500. Headers arrive decoded as
Latin-1, so '²' (0xB2) is the non-ASCII digit a header can carry; a query string is UTF-8."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.numbers import ascii_int

BIGINT_MAX = 2**63 - 1
NOT_NUMBERS = ["²", "٣", "１", "𝟙", "", " 1", "1 ", "+1", "-1", "1_0", "1.0", "1e3", "0x10", "½"]


@pytest.fixture
async def http(live_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as client:
        yield client


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _as_bytes(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers.items()]


def _is_error_json(response: httpx.Response) -> bool:
    return response.headers["content-type"] == "application/json" and "detail" in response.json()


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_only_ascii_digits_are_numbers(text: str) -> None:
    assert ascii_int(text, low=0, high=BIGINT_MAX) is None


def test_ascii_digits_are_numbers_within_their_range() -> None:
    assert ascii_int("0", low=0, high=10) == 0
    assert ascii_int("010", low=0, high=10) == 10
    assert ascii_int("11", low=0, high=10) is None
    assert ascii_int(str(BIGINT_MAX), low=0, high=BIGINT_MAX) == BIGINT_MAX
    assert ascii_int(str(BIGINT_MAX + 1), low=0, high=BIGINT_MAX) is None
    assert ascii_int("9" * 5000, low=0, high=BIGINT_MAX) is None  # not even converted


BEYOND_BIGINT = [str(BIGINT_MAX + 1), str(2**64), "9" * 30]


async def test_a_cursor_that_is_not_a_64_bit_id_is_422(
    http: httpx.AsyncClient, make_user: Any
) -> None:
    viewer = await make_user("viewer")
    for value in [*BEYOND_BIGINT, "²", "٣", "１", "-1", "+1", "1_0", " 1"]:
        response = await http.get(
            "/api/deployments", params={"cursor": _cursor(f"id:{value}")}, headers=viewer.headers
        )
        assert response.status_code == 422, (value, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
    largest = await http.get(
        "/api/deployments", params={"cursor": _cursor(f"id:{BIGINT_MAX}")}, headers=viewer.headers
    )
    assert largest.status_code == 200, largest.text


async def test_a_callback_timestamp_that_is_not_ascii_digits_is_401_without_signing_in(
    http: httpx.AsyncClient, settings: Any
) -> None:
    # Headers travel as bytes: b"\xb2" is '²' in Latin-1, which is how the server decodes them.
    timestamps = ["²".encode("latin-1"), "٣".encode(), b"+1", b"-1", b"9" * 40, b"1_700_000_000"]
    for timestamp in timestamps:
        response = await http.post(
            "/api/deployments/1/callback",
            content=b'{"events": []}',
            headers={
                b"Content-Type": b"application/json",
                b"X-Provisio-Timestamp": timestamp,
                b"X-Provisio-Signature": b"sha256=" + b"0" * 64,
            },
        )
        assert response.status_code == 401, (timestamp, response.text)
        assert response.json() == {"detail": "stale or invalid timestamp"}
    # A fresh one in ASCII digits still gets as far as the signature.
    fresh = await http.post(
        "/api/deployments/1/callback",
        content=b"{}",
        headers={
            "X-Provisio-Timestamp": str(int(time.time())),
            "X-Provisio-Signature": "sha256=" + "0" * 64,
        },
    )
    assert fresh.json() == {"detail": "invalid signature"}


async def test_a_callback_run_that_is_not_ascii_digits_in_range_is_422(
    http: httpx.AsyncClient, settings: Any
) -> None:
    for run in ["٣", "１", "+1", "1_0", " 1", "1.0", str(2**31), "0"]:
        response = await http.post(
            "/api/deployments/1/callback", params={"run": run}, content=b"{}"
        )
        assert response.status_code == 422, (run, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", "run"]


async def test_a_last_event_id_that_is_not_a_history_id_is_422(
    http: httpx.AsyncClient, make_user: Any
) -> None:
    viewer = await make_user("viewer")
    ids = ["²".encode("latin-1"), "٣".encode(), b"+1", b"-1", b"1_0", str(BIGINT_MAX + 1).encode()]
    for last_event_id in ids:
        response = await http.get(
            "/api/deployments/1/events",
            headers=[*_as_bytes(viewer.headers), (b"Last-Event-ID", last_event_id)],
        )
        assert response.status_code == 422, (last_event_id, response.text)
        assert response.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]
        assert _is_error_json(response)


async def test_after_and_limit_that_are_not_ascii_digits_in_range_are_422(
    http: httpx.AsyncClient, make_user: Any
) -> None:
    viewer = await make_user("viewer")
    not_ids = ["٣", "１", "+1", "1_0", "-1", *BEYOND_BIGINT]
    for path, name, values in [
        ("events", "after", not_ids),
        ("history", "after", not_ids),
        ("history", "limit", ["٣", "+1", "0", "1001", "1.0"]),
    ]:
        for value in values:
            response = await http.get(
                f"/api/deployments/1/{path}", params={name: value}, headers=viewer.headers
            )
            assert response.status_code == 422, (path, name, value, response.text)
            assert response.json()["detail"][0]["loc"] == ["query", name]


async def test_the_list_filters_take_ascii_digits_only(
    http: httpx.AsyncClient, make_user: Any
) -> None:
    viewer = await make_user("viewer")
    for name in ("template_id", "limit", "expiring_within_s"):
        for value in ["٣", "１", "+1", "1_0", " 1", "1.0"]:
            response = await http.get(
                "/api/deployments", params={name: value}, headers=viewer.headers
            )
            assert response.status_code == 422, (name, value, response.text)
            assert response.json()["detail"][0]["loc"] == ["query", name]
        assert (
            await http.get("/api/deployments", params={name: "1"}, headers=viewer.headers)
        ).status_code == 200
