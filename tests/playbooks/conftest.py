"""Fixtures of the playbook tests: a callback receiver double, HOME kept in a tmp dir, an LVM test
host (tests/playbooks/lvm_host.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.playbooks.callback_receiver import CallbackReceiverDouble
from tests.playbooks.lvm_host import Host, lvm_test_host


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


@pytest.fixture
def lvm_host(tmp_path: Path) -> Iterator[Host]:
    """A loop-device physical volume seen only by the test's LVM (activation off), cleaned up
    (volume group, loop devices, mounts) even when the test fails."""
    with lvm_test_host(tmp_path) as host:
        yield host
