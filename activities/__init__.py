"""Temporal activities: every side effect, each one idempotent."""
