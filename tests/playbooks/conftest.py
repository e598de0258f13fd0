"""Fixtures of the playbook tests: a callback receiver double, HOME kept in a tmp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.playbooks.callback_receiver import CallbackReceiverDouble


@pytest.fixture(scope="module", autouse=True)
def _home_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ansible writes ~/.ansible; the local runner passes HOME on. Keep both in a tmp dir."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def receiver() -> Iterator[CallbackReceiverDouble]:
    double = CallbackReceiverDouble().start()
    yield double
    double.stop()
