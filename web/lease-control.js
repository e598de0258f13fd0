// A deployment's lease on its page: an "Extend lease" form while the API says the lease may be
// extended (`lease_extendable`), for those who may deploy. The API decides the limit
// (the template's max_lease_s); its refusal is shown as it comes.

import { api, ApiError } from "./api.js";
import { h, setChildren, time } from "./dom.js";

// What the form offers: seconds added after the current end.
const CHOICES = [["1 hour", 3600], ["1 day", 86400], ["7 days", 7 * 86400], ["30 days", 30 * 86400]];

export function leaseControl({ id, signal, enabled, onExtended }) {
  const result = h("div", { class: "lease-result" });
  const form = h("form", { class: "lease-extend", "aria-label": "Extend lease" });
  const element = h("div", { class: "lease", hidden: true }, form, result);
  let offered = null;

  const choice = h("select", { name: "extend_s", id: `lease-extend-${id}` },
    ...CHOICES.map(([label, seconds]) => h("option", { value: String(seconds) }, label)));
  const button = h("button", { type: "submit", class: "secondary" }, "Extend lease");
  setChildren(form, h("label", { for: choice.id }, "Extend the lease by "), choice, " ", button);

  // One key per click: a resend after a lost answer extends once; the next click is new.
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    let notice;
    try {
      const answer = await api.post(`/api/deployments/${id}/lease`,
        { extend_s: Number(choice.value) },
        { headers: { "Idempotency-Key": crypto.randomUUID() }, signal });
      onExtended(answer);
      notice = h("div", { class: "notice notice-ok", role: "status", tabindex: "-1" },
        h("p", {}, "Lease extended: it now ends ", time(answer.expires_at), "."));
    } catch (error) {
      if (signal.aborted || error.name === "AbortError") return;
      const reason = error instanceof ApiError && error.fieldErrors.length
        ? error.fieldErrors.map((e) => e.msg).join("; ")
        : String(error.message || error);
      notice = h("div", { class: "notice notice-error", role: "alert", tabindex: "-1" },
        h("p", {}, h("strong", {}, "Could not extend the lease: "), reason));
    } finally {
      button.disabled = false;
    }
    setChildren(result, notice);
    notice.focus();
  });

  // Shown or hidden as the detail changes; the form itself is kept, so focus and choice stay.
  function render(detail) {
    const show = Boolean(enabled && detail.lease_extendable);
    if (show === offered) return;
    offered = show;
    element.hidden = !show;
    if (!show) setChildren(result);
  }

  return { element, render };
}
