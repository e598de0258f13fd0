#!/usr/bin/python
"""Ansible module: give the loop devices of an image file the image's size.

A loop device keeps the size its backing file had when it was attached. After the image file
grows, the device (and so the filesystem mounted from it) sees the new space only once told:
`losetup --set-capacity`. Then the mounted filesystem can grow online on that device.
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: provisio_loop_capacity
short_description: Bring the loop devices of an image file up to the file's size
description:
  - Lists the loop devices attached to I(image) (C(losetup --associated)); each one smaller than
    the file is told its new capacity (C(losetup --set-capacity)). Reports the devices, so a
    later task can grow the filesystem on them. Supports check mode.
options:
  image:
    description: The image file.
    type: path
    required: true
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={"image": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    image = module.params["image"]
    losetup = module.get_bin_path("losetup", required=True)
    blockdev = module.get_bin_path("blockdev", required=True)
    if not os.path.isfile(image):
        module.exit_json(changed=False, devices=[], grown=[])
    _, out, _ = module.run_command(
        [losetup, "--noheadings", "--output", "NAME", "--associated", image], check_rc=True
    )
    devices = [line.strip() for line in out.splitlines() if line.strip()]
    image_bytes = os.path.getsize(image)
    grown = []
    for device in devices:
        _, size, _ = module.run_command([blockdev, "--getsize64", device], check_rc=True)
        if int(size) < image_bytes:
            grown.append(device)
            if not module.check_mode:
                module.run_command([losetup, "--set-capacity", device], check_rc=True)
    module.exit_json(changed=bool(grown), devices=devices, grown=grown)


if __name__ == "__main__":
    main()
