"""PostgreSQL models, the session factory and Alembic migrations."""
