// A deployment that waits for approval: its plan (what approving builds: the hosts the check-mode
// run reached, each disk, each configuration value with secrets masked) and, for admins other
// than the requester, the decision (approve or reject, with a comment). The workflow decides
// whether a decision still counts; its refusal is shown as the API says it.

import { api, ApiError } from "./api.js";
import { cell, h, setChildren, table, time } from "./dom.js";
import { configurationTable } from "./page-templates.js";
import { MASK, STATUS } from "./vocabulary.js";

export function planView(plan) {
  if (!plan) return h("p", { class: "hint" }, "The plan is being made (a check-mode run on its hosts)…");
  return h("div", { class: "plan" },
    h("p", {}, `Template ${plan.template.name} v${plan.template.version}, on `,
      plan.hosts.length ? plan.hosts.map((host, i) => [i ? ", " : "", h("code", {}, host)]) : "no host",
      "."),
    table(["Mount point", "Size", "Filesystem", "Volume group / LV", "Disk type"],
      plan.disks.map((disk) => h("tr", { dataset: { mount: disk.mount_point } },
        cell("Mount point", h("code", {}, disk.mount_point)),
        cell("Size", `${disk.size_gb} GB`),
        cell("Filesystem", disk.filesystem_type),
        cell("Volume group / LV", `${disk.volume_group} / ${disk.logical_volume}`),
        cell("Disk type", disk.disk_type))),
      { caption: "Disks it would build" }),
    configurationTable(plan.configuration, { secret: (key) => plan.configuration[key] === MASK }));
}

// `onDecided(detail)`: the deployment as it stands after the decision.
export function approvalControl({ user, signal, onDecided }) {
  const planBox = h("div", {});
  const stateBox = h("p", { class: "approval-state" });
  const comment = h("textarea", { name: "comment", rows: "2", maxlength: "1000" });
  const approve = h("button", { type: "submit", value: "approve" }, "Approve");
  const reject = h("button", { type: "submit", value: "reject", class: "danger" }, "Reject");
  const result = h("div", {});
  const commentId = `approval-comment-${Math.random().toString(36).slice(2)}`;
  comment.id = commentId;
  const form = h("form", { class: "approval-decision", "aria-label": "Decide on this deployment" },
    h("label", { for: commentId }, "Comment (optional)"), comment,
    h("div", { class: "form-actions" }, approve, " ", reject));
  const element = h("section", { class: "approval", hidden: true, "aria-label": "Approval" },
    h("h2", {}, "Approval"), stateBox, h("h3", {}, "Plan"), planBox, form, result);
  let current = null;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const decision = event.submitter?.value || "approve";
    approve.disabled = reject.disabled = true;
    let notice;
    try {
      // One key per click: a resend after a lost answer decides once.
      const answer = await api.post(`/api/deployments/${current.id}/${decision}`,
        { comment: comment.value.trim() || null },
        { headers: { "Idempotency-Key": crypto.randomUUID() }, signal });
      notice = h("div", { class: "notice notice-ok", role: "status", tabindex: "-1" },
        h("p", {}, decision === "approve" ? "Approved: it is being built." : "Rejected: nothing was built."));
      onDecided(answer);
    } catch (error) {
      if (signal.aborted || error.name === "AbortError") return;
      const reason = error instanceof ApiError ? error.message : String(error);
      notice = h("div", { class: "notice notice-error", role: "alert", tabindex: "-1" },
        h("p", {}, h("strong", {}, `Could not ${decision}: `), reason));
    } finally {
      approve.disabled = reject.disabled = false;
    }
    setChildren(result, notice);
    notice.focus();
  });

  function render(detail) {
    current = detail;
    element.hidden = !detail.approval;
    if (!detail.approval) return;
    const { state, by, at, comment: said } = detail.approval;
    setChildren(stateBox, h("strong", {}, state), by ? ` by ${by}` : "", at ? [", ", time(at)] : "",
      said ? `: ${said}` : "");
    setChildren(planBox, planView(detail.plan));
    // Admins decide, never on their own deployment; only while it waits with its plan made.
    form.hidden = !(user.role === "admin" && user.id !== detail.user_id
      && detail.status === STATUS.AWAITING_APPROVAL && detail.plan);
  }

  return { element, render };
}
