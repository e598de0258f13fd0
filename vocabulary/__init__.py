"""Provisio's words, each defined once: statuses, run states, disks, error types, the callback
event contract and the workflow's typed inputs and outputs.

The ground floor: every other package imports it and it imports none of them. No I/O and no
SQLAlchemy, so the workflow sandbox imports it as it is.
"""
