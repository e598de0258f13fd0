"""Provisio's benchmarks: every figure measured against a baseline on the same stack, same run.

`python -m bench` (or `make bench`) starts the embedded stack the way `make dev` does (embedded
PostgreSQL, the Temporal dev server, the worker and the API under uvicorn as child processes),
warms it up, runs the scenarios and prints a table plus one final JSON line. `--smoke` runs the
same code with tiny sizes in seconds. The bench-only pieces (the no-op pipeline runner and the
bare baseline workflow) live here and nowhere in the product.
"""
