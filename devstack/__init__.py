"""The embedded stack: PostgreSQL and the Temporal dev server as child processes, no Docker."""
