"""Observability: structured logs (`logs.py`), Prometheus metrics (`metrics.py`, `api_metrics.py`,
`worker_metrics.py`) and OpenTelemetry traces (`tracing.py`)."""
