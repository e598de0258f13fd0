from __future__ import annotations

import pytest

from pipeline.factory import make_runner
from pipeline.jenkins_runner import JenkinsRunner
from pipeline.local_runner import LocalRunner
from pipeline.manual_runner import ManualRunner
from settings import Settings


def test_the_setting_picks_the_runner_and_a_typo_is_refused() -> None:
    assert isinstance(make_runner(Settings(pipeline_runner="local")), LocalRunner)
    assert isinstance(make_runner(Settings(pipeline_runner="manual")), ManualRunner)
    assert isinstance(make_runner(Settings(pipeline_runner="jenkins")), JenkinsRunner)
    with pytest.raises(ValueError, match="choose one of local, jenkins, manual"):
        make_runner(Settings(pipeline_runner="jenkins-typo"))
