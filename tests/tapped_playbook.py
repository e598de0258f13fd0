"""A real ansible-playbook run whose callback plugin posts, through a wire tap, to the real API.

The playbook exercises every key of the callback contract but `unreachable`: a play, a handler,
a changed and an unchanged result, a `no_log` failure the play ignores, a skipped task, and a
command that fails with a long stderr, which fails the run. The tap (`CallbackReceiverDouble`
with `forward_to`) keeps what the plugin sent, so a test can compare it with what the API stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain.callback_tokens import callback_token
from tests.playbooks.callback_receiver import CallbackReceiverDouble
from tests.playbooks.support import CALLBACK_PLUGINS, run_ansible

FAILING_TASK = "Make filesystem"
FAILING_STDERR_FIRST = "mkfs.ext4 1.47.0 (5-Feb-2023)"
FAILING_STDERR_LAST = "mkfs.ext4: /dev/vg_data/lv_pgdata is apparently in use by the system"
SECRET = "s3cr3t"  # printed by the no_log task only
PLAYBOOK = f"""
- name: Provision
  hosts: all
  gather_facts: false
  handlers:
    - name: Reload the service
      ansible.builtin.command:
        argv: [echo, reloaded]
  tasks:
    - name: Write the configuration
      ansible.builtin.command:
        argv: [echo, configured]
      notify: Reload the service
    - name: Flush handlers
      ansible.builtin.meta: flush_handlers
    - name: Read a secret
      ansible.builtin.command:
        argv: [sh, -c, "echo {SECRET}-out; echo {SECRET}-err >&2; exit 3"]
      no_log: true
      ignore_errors: true
    - name: Only on LVM hosts
      ansible.builtin.debug:
        msg: never shown
      when: false
    - name: {FAILING_TASK}
      ansible.builtin.command:
        argv:
          - sh
          - -c
          - >-
            echo '{FAILING_STDERR_FIRST}' >&2;
            yes 'Discarding device blocks: done' | head -n 150 >&2;
            echo '{FAILING_STDERR_LAST}' >&2; exit 1
      changed_when: false
"""
INVENTORY = """
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""


@dataclass
class TappedRun:
    returncode: int
    output: str
    requests: list[Any]  # what the tap received, in order

    @property
    def sent_events(self) -> list[dict[str, Any]]:
        return [event for request in self.requests for event in request.events]


async def run_playbook_into_api(
    api_url: str, callback_secret: str, deployment: dict[str, Any], tmp: Path
) -> TappedRun:
    """Runs the playbook for `deployment` (its callback token derived like the API's), on a
    thread so that the test's event loop (and the worker in it) keeps running."""
    token = callback_token(callback_secret, deployment["id"], deployment["workflow_id"])
    path = f"/api/deployments/{deployment['id']}/callback"
    (tmp / "provision.yml").write_text(PLAYBOOK)
    (tmp / "inventory.yml").write_text(INVENTORY)
    tap = CallbackReceiverDouble(forward_to=api_url).start()
    try:
        result = await asyncio.to_thread(
            run_ansible,
            ["ansible-playbook", "-i", str(tmp / "inventory.yml"), str(tmp / "provision.yml")],
            tmp,
            ANSIBLE_CALLBACK_PLUGINS=str(CALLBACK_PLUGINS),
            ANSIBLE_CALLBACKS_ENABLED="provisio_callback",
            PROVISIO_CALLBACK_URL=tap.url(path, token),
            PROVISIO_CALLBACK_TOKEN=token,
        )
    finally:
        tap.stop()
    return TappedRun(result.returncode, result.stdout + result.stderr, tap.received(path))
