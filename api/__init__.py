"""The HTTP API: thin. It validates shapes, starts or signals workflows, and reads PostgreSQL."""
