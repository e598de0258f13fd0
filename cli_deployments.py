"""`provisio login | logout | deployments …`: Provisio from a terminal, through the HTTP API.

Output is for people by default and JSON with `--json` (for scripts: one JSON document, or one
JSON object per line for `watch`). Errors go to standard error. Exit codes: 0 done, 1 the API
refused or could not be reached, 2 a usage error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from cli_client import (
    DEFAULT_URL,
    ApiClient,
    ApiError,
    ClientSettings,
    TokenStore,
    field_path,
    token_expiry,
)
from vocabulary.operations import Operation
from vocabulary.statuses import DeploymentStatus

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# How often `watch` reconnects after a dropped stream before it gives up.
WATCH_RECONNECTS = 5
# History rows per request: the most the API gives in one page.
HISTORY_PAGE = 1000

TOKEN_HELP = (
    "The token comes from PROVISIO_TOKEN or from `provisio login`, which stores it in "
    "~/.config/provisio/tokens.json (mode 0600, one per server URL)."
)


# --- argument parsing ---------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    """Adds `login`, `logout` and `deployments` to the `provisio` parser's subcommands."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--url", help=f"the Provisio API (default: PROVISIO_URL, else {DEFAULT_URL})"
    )
    output = argparse.ArgumentParser(add_help=False, parents=[server])
    output.add_argument("--json", action="store_true", help="print JSON, for scripts")

    login = commands.add_parser(
        "login",
        parents=[server],
        help="sign in to the API and keep the token for the commands below",
        description="Sign in with a username and password. The token is stored in "
        "~/.config/provisio/tokens.json, mode 0600, for this server URL only; it expires like "
        "any sign-in, then sign in again. PROVISIO_TOKEN, when set, is used instead.",
    )
    login.add_argument("--username", help="(asked when not given)")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    login.set_defaults(client_handler=_login, needs_token=False)
    logout = commands.add_parser(
        "logout", parents=[server], help="forget the token stored for this server"
    )
    logout.set_defaults(client_handler=_logout, needs_token=False)

    group = commands.add_parser(
        "deployments",
        help="list, launch, cancel, destroy, retry, extend, resize, set, approve, reject and "
        "watch deployments "
        "(through the API)",
        description="Deployments through the HTTP API, as the signed-in user. " + TOKEN_HELP,
    )
    actions = group.add_subparsers(dest="deployments_command", required=True, metavar="COMMAND")

    listing = actions.add_parser(
        "list", parents=[output], help="your deployments (all of them for admins), newest first"
    )
    listing.add_argument(
        "--status", choices=[status.value for status in DeploymentStatus], help="only this status"
    )
    listing.add_argument("--template", type=_positive_int, metavar="ID", help="only this template")
    listing.add_argument("--limit", type=_page_size, default=20, metavar="N", help="1-100")
    listing.add_argument("--cursor", help="the page after this one (printed under a full page)")
    listing.add_argument(
        "--expiring-within",
        type=_duration,
        metavar="DURATION",
        help="only leases ending within this long (overdue ones too): 3600, 90m, 12h, 7d",
    )
    listing.set_defaults(client_handler=_list)

    show = actions.add_parser("show", parents=[output], help="one deployment, with its disks")
    show.add_argument("id", type=_positive_int)
    show.add_argument("--history", action="store_true", help="also every history row")
    show.set_defaults(client_handler=_show)

    launch = actions.add_parser(
        "launch",
        parents=[output],
        help="launch a deployment from a template",
        description="Launch a deployment. Values of --set are JSON scalars when they parse as "
        "one (250, 2.5, true), else text; quote JSON text to keep it text: --set 'mode=\"true\"'.",
    )
    launch.add_argument("--template", type=_positive_int, required=True, metavar="ID")
    launch.add_argument("--name", required=True, help="the deployment's name")
    launch.add_argument(
        "--set",
        action="append",
        default=[],
        type=_setting,
        metavar="KEY=VALUE",
        help="a configuration value the template lets deployments set (repeatable)",
    )
    launch.add_argument(
        "--disk",
        action="append",
        default=[],
        type=_disk,
        metavar="/MOUNT=SIZE[:FS]",
        help="a template disk's size in GB, and filesystem (repeatable): /data/pgdata=40:xfs",
    )
    _add_operation_options(launch)
    launch.set_defaults(client_handler=_launch)

    hints = {
        Operation.CANCEL: "stop a deployment still being provisioned and tear down what it built",
        Operation.DESTROY: "tear down a succeeded, failed or timed-out deployment",
        Operation.RETRY: "run a failed or timed-out deployment's pipeline again (attempt + 1)",
    }
    for operation in Operation:
        command = actions.add_parser(
            operation.value,
            parents=[output],
            help=hints.get(operation, operation.value),
            description=f"{hints.get(operation, operation.value).capitalize()}. It starts at "
            "once, without asking: the API refuses (exit 1, with its reason) what the "
            "deployment's state does not allow.",
        )
        command.add_argument("id", type=_positive_int)
        _add_operation_options(command)
        command.set_defaults(client_handler=_operate, operation=operation)

    for decision, hint in (
        ("approve", "build a deployment awaiting approval, as its plan says (admins)"),
        ("reject", "reject a deployment awaiting approval: nothing is built (admins)"),
    ):
        command = actions.add_parser(
            decision,
            parents=[output],
            help=hint,
            description=f"{hint.capitalize()}. Not your own launch; only once its plan is "
            "shown (`provisio deployments show ID`). The API refuses (exit 1, with its reason) "
            "anything else.",
        )
        command.add_argument("id", type=_positive_int)
        command.add_argument("--comment", help="why (shown in history and the detail)")
        _add_operation_options(command)
        command.set_defaults(client_handler=_decide, decision=decision)

    extend = actions.add_parser(
        "extend",
        parents=[output],
        help="extend a deployment's lease",
        description="Move a deployment's lease end later: --by a duration after its current "
        "end, or --until a moment (ISO 8601 with its time zone). The API refuses (exit 1, with "
        "its reason) an end past the template's max_lease_s from now, or a deployment without "
        "a lease or being taken down.",
    )
    extend.add_argument("id", type=_positive_int)
    when = extend.add_mutually_exclusive_group(required=True)
    when.add_argument("--by", type=_duration, metavar="DURATION", help="3600, 90m, 12h, 7d")
    when.add_argument("--until", metavar="TIME", help="e.g. 2026-12-31T18:00:00+01:00")
    extend.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="send this key (a retry with the same key extends once); default: a new one per run",
    )
    extend.set_defaults(client_handler=_extend)

    resize = actions.add_parser(
        "resize",
        parents=[output],
        help="grow a succeeded deployment's disks",
        description="Grow disks of a succeeded deployment to new sizes in GB (disks only grow): "
        "it is updating while its playbook runs again, then succeeded with the new sizes or "
        "failed with the reason. The API refuses (exit 1, naming the disk) a shrink, a size "
        "outside the template's bounds or a total past its cap, or a deployment not succeeded.",
    )
    resize.add_argument("id", type=_positive_int)
    resize.add_argument(
        "--disk",
        action="append",
        required=True,
        type=_disk_size,
        metavar="/MOUNT=SIZE",
        help="a disk's new size in GB (repeatable): /data/pgdata=40",
    )
    _add_operation_options(resize)
    resize.set_defaults(client_handler=_resize)

    set_values = actions.add_parser(
        "set",
        parents=[output],
        help="change configuration values of a succeeded deployment",
        description="Set configuration values of a succeeded deployment (within what its "
        "template's overrides allow): it is updating while its playbook runs again with them, "
        "then succeeded with the new values or failed with the reason; history shows old → new, "
        "secrets masked. Values are JSON scalars when they parse as one (250, 2.5, true), else "
        "text; quote JSON text to keep it text: 'mode=\"true\"'.",
    )
    set_values.add_argument("id", type=_positive_int)
    set_values.add_argument(
        "values", nargs="+", type=_setting, metavar="KEY=VALUE", help="a value to set"
    )
    _add_operation_options(set_values)
    set_values.set_defaults(client_handler=_set)

    watch = actions.add_parser(
        "watch",
        parents=[output],
        help="follow a deployment's status and new history rows until it settles or ends",
        description="Follow a deployment until it settles (succeeded, failed, timed out) or "
        "ends (cancelled, destroyed, rejected). Exits 0 whatever the outcome; the last line "
        "(or the last JSON object's status) says which.",
    )
    watch.add_argument("id", type=_positive_int)
    watch.add_argument("--all", action="store_true", help="start with every history row so far")
    watch.set_defaults(client_handler=_watch)


def _add_operation_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="send this key (a script's retry with the same key does the operation once); "
        "default: a new one per run",
    )
    command.add_argument("--watch", action="store_true", help="then follow it, as `watch` does")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


DURATION = re.compile(r"^(?P<n>\d+)\s*(?P<unit>s|m|min|h|d)?$", re.I)
SECONDS_PER = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> int:
    """Seconds, from `3600`, `90m`, `12h` or `7d`."""
    found = DURATION.match(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"expected seconds or N[s|m|h|d], got {text!r}")
    return int(found["n"]) * SECONDS_PER[(found["unit"] or "s").lower()]


def _page_size(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"at most 100: {text!r}")
    return value


def _setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        return key, raw
    # Scalars only (what a deployment may set); anything else stays the text that was typed.
    return key, value if isinstance(value, str | bool | int | float) else raw


DISK = re.compile(r"^(?P<mount>/[^=]*)=(?P<size>\d+)\s*(?:g|gb|gib)?(?::(?P<fs>[a-z0-9]+))?$", re.I)


def _disk(text: str) -> dict[str, Any]:
    found = DISK.match(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(
            f"expected /MOUNT=SIZE or /MOUNT=SIZE:FILESYSTEM (size in GB), got {text!r}"
        )
    disk: dict[str, Any] = {"mount_point": found["mount"], "size_gb": int(found["size"])}
    if found["fs"]:
        disk["filesystem_type"] = found["fs"].lower()
    return disk


def _disk_size(text: str) -> dict[str, Any]:
    disk = _disk(text)
    if "filesystem_type" in disk:
        raise argparse.ArgumentTypeError(
            f"a resize changes sizes only: expected /MOUNT=SIZE (in GB), got {text!r}"
        )
    return disk


# --- running ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Runs a parsed client command; returns the exit code."""
    settings = ClientSettings()
    url = args.url or settings.url
    store = TokenStore(settings.config_dir)
    needs_token = getattr(args, "needs_token", True)
    token = (settings.token or store.get(url)) if needs_token else None
    if needs_token and not token:
        message = f"not signed in to {url}: sign in with `provisio login`, or set PROVISIO_TOKEN"
        _fail(args, ApiError(message))
        return EXIT_REFUSED
    args.store = store
    args.env_token = bool(settings.token)
    try:
        with ApiClient(url, token) as client:
            return int(args.client_handler(args, client))
    except ApiError as error:
        _fail(args, error)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


def _fail(args: argparse.Namespace, error: ApiError) -> None:
    if getattr(args, "json", False):
        body = {"error": str(error), "status": error.status, "detail": error.detail}
        print(json.dumps(body), file=sys.stderr)
    else:
        print(f"provisio: {error}", file=sys.stderr)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _when(value: str | None) -> str:
    """An API timestamp in local time, to the second."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [headers, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


# --- login --------------------------------------------------------------------------------------


def _login(args: argparse.Namespace, client: ApiClient) -> int:
    username = args.username or input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {username} at {client.url}: ")
    if not username or not password:
        print("provisio: a username and a password are needed", file=sys.stderr)
        return EXIT_USAGE
    answer = client.post("/api/auth/token", data={"username": username, "password": password})
    token = answer["access_token"]
    args.store.put(client.url, token)
    expiry = token_expiry(token)
    until = f"; it expires {_when(expiry.isoformat())}" if expiry else ""
    print(f"signed in to {client.url} as {username}{until}")
    print(f"token stored in {args.store.path} (readable by you only)")
    if args.env_token:
        print("note: PROVISIO_TOKEN is set, and the commands use it rather than this token")
    return EXIT_OK


def _logout(args: argparse.Namespace, client: ApiClient) -> int:
    if args.store.forget(client.url):
        print(f"forgot the token for {client.url}")
    else:
        print(f"no token stored for {client.url}")
    return EXIT_OK


# --- deployments --------------------------------------------------------------------------------


def _list(args: argparse.Namespace, client: ApiClient) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    if args.template:
        params["template_id"] = args.template
    if args.cursor:
        params["cursor"] = args.cursor
    if args.expiring_within is not None:
        params["expiring_within_s"] = args.expiring_within
    page = client.get("/api/deployments", params=params)
    if args.json:
        _print_json(page)
        return EXIT_OK
    items = page["items"]
    if not items:
        filtered = args.status or args.template or args.expiring_within is not None
        print("no deployments match" if filtered else "no deployments yet")
    else:
        rows = [
            [
                str(item["id"]),
                item["deployment_name"],
                item["status"],
                item["template_name"],
                item["username"],
                _when(item["created_at"]),
            ]
            for item in items
        ]
        print(_table(["ID", "NAME", "STATUS", "TEMPLATE", "OWNER", "CREATED"], rows))
    if page.get("next_cursor"):
        print(f"more: provisio deployments list --cursor {page['next_cursor']}", file=sys.stderr)
    return EXIT_OK


def _describe(detail: dict[str, Any]) -> str:
    attempt = f", attempt {detail['attempt']}" if detail.get("attempt", 1) > 1 else ""
    return f"{detail['deployment_name']} (#{detail['id']}) is {detail['status']}{attempt}"


def _may(detail: dict[str, Any]) -> list[str]:
    """The operations the API allows now, and the changes (resize, set) when it may change."""
    changes = ["resize", "set"] if detail.get("resizable") else []
    return [*detail["allowed_operations"], *changes]


def _show(args: argparse.Namespace, client: ApiClient) -> int:
    detail = client.get(f"/api/deployments/{args.id}")
    history = _history(client, args.id) if args.history else None
    if args.json:
        _print_json(detail if history is None else {**detail, "history": history})
        return EXIT_OK
    facts = [
        ("status", detail["status"]),
        ("attempt", str(detail["attempt"])),
        ("template", f"{detail['template_name']} v{detail['template_version']}"),
        ("service", detail["service_type"]),
        ("owner", detail["username"]),
        ("created", _when(detail["created_at"])),
        ("updated", _when(detail["updated_at"])),
    ]
    if detail.get("retained_until"):
        facts.append(("kept until", f"{_when(detail['retained_until'])} (then torn down)"))
    if detail.get("expires_at"):
        facts.append(("expires", _when(detail["expires_at"])))
    if detail.get("jenkins_job_id"):
        facts.append(("pipeline job", detail["jenkins_job_id"]))
    if approval := detail.get("approval"):
        said = approval["state"] + (f" by {approval['by']}" if approval.get("by") else "")
        said += f", {_when(approval['at'])}" if approval.get("at") else ""
        said += f": {approval['comment']}" if approval.get("comment") else ""
        facts.append(("approval", said))
    facts += [
        ("workflow", detail["workflow_id"]),
        ("temporal", detail["temporal_url"]),
        ("you may", ", ".join(_may(detail)) or "nothing now"),
    ]
    print(f"{detail['deployment_name']} (#{detail['id']})")
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        print(f"  {name.ljust(width)}  {value}")
    disks = detail["disk_allocations"]
    print("disks" if disks else "disks: none")
    if disks:
        rows = [
            [
                d["mount_point"],
                f"{d['size_gb']} GB",
                d["filesystem_type"],
                f"{d['volume_group']}/{d['logical_volume']}",
                d["state"],
                _when(d["state_changed_at"]),
            ]
            for d in disks
        ]
        header = ["MOUNT", "SIZE", "FS", "VOLUME", "STATE", "SINCE"]
        print("\n".join(f"  {line}" for line in _table(header, rows).splitlines()))
    configuration = {k: v for k, v in detail["configuration"].items() if k != "provisio"}
    if configuration:
        print("configuration")
        for key, value in configuration.items():
            print(f"  {key} = {json.dumps(value)}")
    if plan := detail.get("plan"):
        hosts = ", ".join(plan.get("hosts") or []) or "no host"
        print(
            f"plan (template {plan['template']['name']} v{plan['template']['version']}, on {hosts})"
        )
        for disk in plan["disks"]:
            print(
                f"  {disk['mount_point']}  {disk['size_gb']} GB {disk['filesystem_type']}  "
                f"{disk['volume_group']}/{disk['logical_volume']}"
            )
    if history is not None:
        print("history")
        for row in history:
            print(f"  {_history_line(row)}")
    return EXIT_OK


def _launch(args: argparse.Namespace, client: ApiClient) -> int:
    body: dict[str, Any] = {
        "template_id": args.template,
        "deployment_name": args.name,
        "configuration": dict(args.set),
        "disk_allocations": args.disk,
    }
    key = args.idempotency_key or str(uuid.uuid4())
    try:
        detail = client.post("/api/deployments", json=body, headers={"Idempotency-Key": key})
    except ApiError as error:
        raise _name_disks(error, args.disk) from None
    return _after_operation(args, client, detail, "launched", after=0)


def _name_disks(error: ApiError, disks: list[dict[str, Any]]) -> ApiError:
    """A 422 about `disk_allocations.N` names the --disk it came from."""
    if error.status != 422 or not isinstance(error.detail, list):
        return error
    lines = []
    for problem in error.detail:
        loc = [part for part in problem.get("loc", []) if part != "body"]
        where = field_path(loc)
        if len(loc) >= 2 and loc[0] == "disk_allocations" and isinstance(loc[1], int):
            if loc[1] < len(disks):
                rest = ".".join(str(part) for part in loc[2:])
                where = f"--disk {disks[loc[1]]['mount_point']}" + (f" ({rest})" if rest else "")
        lines.append(f"  {where}: {problem.get('msg', problem)}")
    return ApiError("the request is not valid:\n" + "\n".join(lines), error.status, error.detail)


def _operate(args: argparse.Namespace, client: ApiClient) -> int:
    operation: Operation = args.operation
    key = args.idempotency_key or str(uuid.uuid4())
    # With --watch, every row from the operation on is news: the rows up to now are not.
    after = _last_row_id(client, args.id) if args.watch else 0
    detail = client.post(
        f"/api/deployments/{args.id}/{operation.value}", headers={"Idempotency-Key": key}
    )
    return _after_operation(args, client, detail, f"{operation.value} requested", after=after)


def _decide(args: argparse.Namespace, client: ApiClient) -> int:
    key = args.idempotency_key or str(uuid.uuid4())
    after = _last_row_id(client, args.id) if args.watch else 0
    detail = client.post(
        f"/api/deployments/{args.id}/{args.decision}",
        json={"comment": args.comment},
        headers={"Idempotency-Key": key},
    )
    said = "approved" if args.decision == "approve" else "rejected"
    return _after_operation(args, client, detail, said, after=after)


def _resize(args: argparse.Namespace, client: ApiClient) -> int:
    key = args.idempotency_key or str(uuid.uuid4())
    after = _last_row_id(client, args.id) if args.watch else 0
    try:
        detail = client.request(
            "PATCH",
            f"/api/deployments/{args.id}",
            json={"disk_allocations": args.disk},
            headers={"Idempotency-Key": key},
        )
    except ApiError as error:
        raise _name_disks(error, args.disk) from None
    return _after_operation(args, client, detail, "resize requested", after=after)


def _set(args: argparse.Namespace, client: ApiClient) -> int:
    key = args.idempotency_key or str(uuid.uuid4())
    after = _last_row_id(client, args.id) if args.watch else 0
    detail = client.request(
        "PATCH",
        f"/api/deployments/{args.id}",
        json={"configuration": dict(args.values)},
        headers={"Idempotency-Key": key},
    )
    return _after_operation(args, client, detail, "configuration change requested", after=after)


def _extend(args: argparse.Namespace, client: ApiClient) -> int:
    body: dict[str, Any] = (
        {"extend_s": args.by} if args.by is not None else {"expires_at": args.until}
    )
    key = args.idempotency_key or str(uuid.uuid4())
    detail = client.post(
        f"/api/deployments/{args.id}/lease", json=body, headers={"Idempotency-Key": key}
    )
    if args.json:
        _print_json(detail)
    else:
        print(f"lease extended: {_describe(detail)}, expires {_when(detail['expires_at'])}")
    return EXIT_OK


def _after_operation(
    args: argparse.Namespace, client: ApiClient, detail: dict[str, Any], said: str, after: int
) -> int:
    if args.json and not args.watch:
        _print_json(detail)
        return EXIT_OK
    if args.json:
        print(json.dumps({"event": "accepted", "deployment": detail}))
    else:
        print(f"{said}: {_describe(detail)}")
        if not args.watch:
            print(f"follow it: provisio deployments watch {detail['id']}")
    if args.watch:
        return _follow(args, client, detail, after)
    return EXIT_OK


def _watch(args: argparse.Namespace, client: ApiClient) -> int:
    # The rows there already are not news (unless --all); read before the status, so that
    # nothing written in between is missed.
    after = 0 if args.all else _last_row_id(client, args.id)
    detail = client.get(f"/api/deployments/{args.id}")
    if args.json:
        print(json.dumps({"event": "status", "status": detail["status"], "deployment": detail}))
    else:
        print(_describe(detail))
    return _follow(args, client, detail, after)


def _history_pages(client: ApiClient, deployment_id: int) -> Iterator[list[dict[str, Any]]]:
    """The history, oldest first, a page at a time (the API's `Link: rel="next"`)."""
    return client.pages(f"/api/deployments/{deployment_id}/history", {"limit": HISTORY_PAGE})


def _history(client: ApiClient, deployment_id: int) -> list[dict[str, Any]]:
    return [row for page in _history_pages(client, deployment_id) for row in page]


def _last_row_id(client: ApiClient, deployment_id: int) -> int:
    last = 0
    for page in _history_pages(client, deployment_id):
        if page:
            last = int(page[-1]["id"])
    return last


def _history_line(row: dict[str, Any]) -> str:
    attempt = f"  [attempt {row['attempt']}]" if row.get("attempt", 1) > 1 else ""
    return f"{_when(row['created_at'])}  {row['status']:<12} {row['message']}{attempt}"


def _follow(args: argparse.Namespace, client: ApiClient, detail: dict[str, Any], after: int) -> int:
    """Prints new history rows and status changes until the deployment settles or ends (the
    stream's `end`), reconnecting after the stream's five-minute limit or a dropped link."""
    deployment_id = detail["id"]
    status = detail["status"]
    path = f"/api/deployments/{deployment_id}/events"
    failures = 0
    while True:
        ended, seen = False, 0
        try:
            for event in client.events(path, after):
                seen += 1
                failures = 0
                if event.event == "end":
                    ended = True
                    break
                if event.event == "history":
                    row = event.json()
                    after = max(after, int(row["id"]))
                    line = json.dumps({"event": "history", "row": row})
                    print(line if args.json else _history_line(row), flush=True)
                elif event.event == "status" and event.json()["status"] != status:
                    data = event.json()
                    status = data["status"]
                    line = json.dumps({"event": "status", **data})
                    print(line if args.json else f"status: {status}", flush=True)
        except ApiError as error:
            # A dropped link, or too many streams of this user open right now: wait, try again.
            if error.status not in (None, 429) or failures >= WATCH_RECONNECTS:
                raise
            failures += 1
            time.sleep(min(2**failures, 30))
            continue
        # Nothing at all is a 204: the deployment is final and has nothing new. A stream that
        # closed without `end` reached the server's time limit: resume after the last row.
        if ended or seen == 0:
            break
    if args.json:
        print(json.dumps({"event": "end", "status": status}), flush=True)
    else:
        print(f"{_final_words(status)}: {detail['deployment_name']} (#{deployment_id}) is {status}")
    return EXIT_OK


def _final_words(status: str) -> str:
    return "ended" if DeploymentStatus(status).is_terminal else "settled"
