"""Pick the worker's pipeline runner from settings."""

from __future__ import annotations

from pipeline.manual_runner import ManualRunner
from pipeline.runner import PipelineRunner
from settings import Settings


def make_runner(settings: Settings) -> PipelineRunner:
    if settings.pipeline_runner == "manual":
        return ManualRunner()
    raise ValueError(
        f"unknown pipeline runner {settings.pipeline_runner!r} (PROVISIO_PIPELINE_RUNNER)"
    )
