"""The bench's own arithmetic: the plugin-shaped stream, percentiles, plan walking, flags."""

from __future__ import annotations

import json

import pytest

from api.callback_ingest import parse_events, signature_of
from bench.config import parse_args
from bench.events import playbook_batches, playbook_event_count, signed_request
from bench.scenarios.reads import plan_nodes, seq_scans_on_big_tables
from bench.stats import percentile


@pytest.mark.parametrize(("hosts", "tasks", "batch"), [(50, 40, 100), (3, 2, 100), (7, 3, 4)])
def test_playbook_stream_is_cut_like_the_plugin_cuts_it(hosts: int, tasks: int, batch: int) -> None:
    batches = list(playbook_batches(hosts, tasks, batch))
    events = [e for b in batches for e in b]
    assert len(events) == playbook_event_count(hosts, tasks)
    assert [e["counter"] for e in events] == list(range(1, len(events) + 1))
    assert batches[0] == [events[0]] and events[0]["event"] == "playbook_on_start"
    assert events[-1]["event"] == "playbook_on_stats"
    assert events[-1]["data"]["total_events"] == len(events)
    assert all(1 <= len(b) <= batch for b in batches)
    # Every task start closes its batch (the plugin flushes on it).
    for b in batches:
        starts = [i for i, e in enumerate(b) if e["event"] == "playbook_on_task_start"]
        assert starts in ([], [len(b) - 1])
    # Each batch passes the endpoint's own parser unchanged in number.
    for b in batches:
        assert len(parse_events(json.dumps({"events": b}).encode())) == len(b)


def test_the_default_stream_is_the_issues_shape() -> None:
    batches = list(playbook_batches(50, 40))
    assert playbook_event_count(50, 40) == 2043
    assert max(map(len, batches)) == 51


def test_signed_request_verifies_with_the_endpoints_scheme() -> None:
    body, headers = signed_request("token-1", [{"counter": 1}], timestamp=1_700_000_000)
    expected = signature_of("token-1", "1700000000", body)
    assert headers["X-Provisio-Signature"] == f"sha256={expected}"


def test_percentile_interpolates_between_ranks() -> None:
    samples = list(range(1, 101))
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile([5.0], 99) == 5.0


def test_seq_scans_count_only_the_big_tables() -> None:
    plan = {
        "Node Type": "Nested Loop",
        "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "users"},
            {"Node Type": "Index Scan", "Relation Name": "deployments"},
            {"Node Type": "Seq Scan", "Relation Name": "deployment_history"},
        ],
    }
    nodes = plan_nodes(plan)
    assert nodes[0] == ("Nested Loop", None)
    assert seq_scans_on_big_tables(nodes) == 1


def test_flags_shrink_and_scale() -> None:
    smoke = parse_args(["--smoke"])
    assert smoke.orchestration_n < 20 and smoke.read_deployments < 1000
    scaled = parse_args(["--scale", "0.01", "-n", "20", "--scenarios", "reads,callbacks"])
    assert (scaled.read_deployments, scaled.read_disks, scaled.read_history) == (1000, 3000, 10000)
    assert scaled.orchestration_n == 20
    assert scaled.scenarios == ["reads", "callbacks"]
    with pytest.raises(SystemExit):
        parse_args(["--scenarios", "nope"])


async def test_lean_client_reads_keep_alive_answers_and_refuses_chunked_ones() -> None:
    import asyncio

    from bench.lean_http import LeanHTTP, LeanHTTPError

    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            requests.append(head)
            if b"/chunked" in head:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            else:
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok": [1]}')
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanHTTP(f"http://127.0.0.1:{port}")
    await client.connect()
    try:
        assert await client.get_json("/a", {"Authorization": "Bearer t"}) == {"ok": [1]}
        assert await client.get_json("/b") == {"ok": [1]}  # the same connection, kept alive
        with pytest.raises(LeanHTTPError):
            await client.get("/chunked")
    finally:
        client.close()
        server.close()
    assert requests[0].startswith(b"GET /a HTTP/1.1\r\n")
    assert b"Authorization: Bearer t\r\n" in requests[0]
