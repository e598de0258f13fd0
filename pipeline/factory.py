"""Pick the worker's pipeline runner from settings."""

from __future__ import annotations

from pipeline.runner import PipelineRunner
from settings import Settings

RUNNERS = ("local", "jenkins", "manual")


def make_runner(settings: Settings) -> PipelineRunner:
    if settings.pipeline_runner == "local":
        from pipeline.local_runner import LocalRunner

        return LocalRunner(settings)
    if settings.pipeline_runner == "jenkins":
        from pipeline.jenkins_runner import JenkinsRunner

        return JenkinsRunner(settings)
    if settings.pipeline_runner == "manual":
        from pipeline.manual_runner import ManualRunner

        return ManualRunner()
    raise ValueError(
        f"unknown pipeline runner {settings.pipeline_runner!r} (PROVISIO_PIPELINE_RUNNER): "
        f"choose one of {', '.join(RUNNERS)}"
    )
