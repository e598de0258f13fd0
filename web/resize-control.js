// Growing a deployment's disks on its page: a form on each disk while the API says the
// deployment may be resized (`resizable`: it has succeeded), for those who may deploy. Sizes
// only grow; the API decides the bounds and the template's cap, and its refusal, naming the
// disk, is shown as it comes.

import { api, ApiError } from "./api.js";
import { h, setChildren } from "./dom.js";
import { sizeBounds } from "./page-templates.js";

export function resizeControl({ id, signal, enabled, onResized }) {
  const forms = h("div", { class: "resize-forms" });
  const result = h("div", { class: "resize-result" });
  const offer = h("div", { hidden: true },
    h("h3", {}, "Grow a disk"),
    h("p", { class: "hint" }, "Disks only grow. The deployment is updating while its playbook "
      + "grows the volume and the filesystem, online, with the data kept."),
    forms);
  // The result stays in view when the forms go (an accepted resize makes the deployment
  // updating, which hides them).
  const element = h("div", { class: "resize" }, offer, result);
  let offeredFor = null; // the mount points the forms were built for
  const inputs = new Map();

  function formFor(disk, index) {
    const input = h("input", { type: "number", name: "size_gb", id: `resize-${id}-${index}`,
      required: true, step: "1", inputmode: "numeric" });
    const now = h("span", { class: "hint" });
    const button = h("button", { type: "submit", class: "secondary" }, "Grow");
    const form = h("form", { class: "resize-disk", "aria-label": `Resize ${disk.mount_point}`,
      dataset: { mount: disk.mount_point } },
    h("label", { for: input.id }, "New size of ", h("code", {}, disk.mount_point), " (GB) "),
    input, " ", now, " ", button);
    inputs.set(disk.mount_point, { input, now });

    // One key per click: a resend after a lost answer resizes once; the next click is new.
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      let notice;
      try {
        const answer = await api.patch(`/api/deployments/${id}`,
          { disk_allocations: [{ mount_point: disk.mount_point, size_gb: Number(input.value) }] },
          { headers: { "Idempotency-Key": crypto.randomUUID() }, signal });
        onResized(answer);
        notice = h("div", { class: "notice notice-ok", role: "status", tabindex: "-1" },
          h("p", {}, `Resize requested: ${disk.mount_point} to ${input.value} GB; the deployment `
            + `is ${answer.status}.`));
      } catch (error) {
        if (signal.aborted || error.name === "AbortError") return;
        const reason = error instanceof ApiError && error.fieldErrors.length
          ? error.fieldErrors.map((e) => e.msg).join("; ")
          : String(error.message || error);
        notice = h("div", { class: "notice notice-error", role: "alert", tabindex: "-1" },
          h("p", {}, h("strong", {}, `Could not resize ${disk.mount_point}: `), reason));
      } finally {
        button.disabled = false;
      }
      setChildren(result, notice);
      notice.focus();
    });
    return form;
  }

  // Shown or hidden as the detail changes; the forms are kept while the disks are the same, so
  // focus and what was typed stay. Only the bounds follow the disks' sizes.
  function render(detail) {
    const show = Boolean(enabled && detail.resizable && detail.disk_allocations.length);
    offer.hidden = !show;
    if (!show) return;
    const mounts = detail.disk_allocations.map((disk) => disk.mount_point).join("\n");
    if (mounts !== offeredFor) {
      offeredFor = mounts;
      inputs.clear();
      setChildren(forms, detail.disk_allocations.map(formFor));
    }
    for (const disk of detail.disk_allocations) {
      const { input, now } = inputs.get(disk.mount_point);
      const [, high] = sizeBounds(disk);
      input.min = String(disk.size_gb + 1);
      input.max = String(high);
      now.textContent = disk.size_gb >= high
        ? `now ${disk.size_gb} GB, its template's largest`
        : `now ${disk.size_gb} GB, up to ${high} GB`;
    }
  }

  return { element, render };
}
