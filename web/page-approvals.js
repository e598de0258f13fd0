// Admins: what waits for approval, oldest first, each with its plan and the decision.

import { api } from "./api.js";
import { emptyState, h, link, pageHeader, setChildren, time } from "./dom.js";
import { approvalControl } from "./approval-control.js";

export async function approvalsPage(ctx) {
  const list = h("div", {});

  async function load() {
    const waiting = await api.get("/api/approvals", { signal: ctx.signal });
    setChildren(list, waiting.length ? waiting.map(card)
      : emptyState("Nothing waits for approval.", "Launches of templates that require approval appear here."));
  }

  function card(detail) {
    const control = approvalControl({ user: ctx.user, signal: ctx.signal, onDecided: () => load() });
    control.render(detail);
    return h("article", { class: "card approval-card", dataset: { id: String(detail.id) } },
      h("h2", {}, link(`/deployments/${detail.id}`, detail.deployment_name)),
      h("p", { class: "hint" }, `Requested by ${detail.username}, `, time(detail.created_at),
        ` from ${detail.template_name} v${detail.template_version}.`),
      control.element);
  }

  await load();
  return h("section", {}, pageHeader("Approvals"), list);
}
