// The signed-in user's own page: who they are, their quota and what they use, and their
// webhook (PATCH /api/users/me). A new webhook secret is shown once, right after it is made:
// no other answer carries it.

import { api, ApiError } from "./api.js";
import { definitionList, field, FormErrors, h, pageHeader, setChildren } from "./dom.js";

const limit = (value) => (value === null ? "no limit" : String(value));

export async function accountPage(ctx) {
  const facts = h("div", {});
  const shown = h("div", {});
  const summary = h("div", { class: "notice notice-error", role: "alert", tabindex: "-1", hidden: true });
  const url = field({ id: "webhook-url", label: "Webhook URL",
    input: h("input", { type: "url", name: "webhook_url", maxlength: "2048", spellcheck: "false",
      placeholder: "https://hooks.example.com/provisio" }),
    hint: "Each status change, lease warning and lease end of your deployments is POSTed here, "
      + "signed (README, \"Webhooks\"). Empty: none." });
  const errors = new FormErrors(summary);
  errors.add("webhook_url", url);
  const save = h("button", { type: "submit" }, "Save");
  const rotate = h("button", { type: "button", class: "secondary" }, "New secret");
  const form = h("form", { class: "card", "aria-label": "Your webhook", novalidate: true },
    h("h2", {}, "Webhook"), summary, url.wrapper, h("div", { class: "form-actions" }, save, " ", rotate));

  function render(me) {
    setChildren(facts, definitionList([
      ["Username", me.username],
      ["Role", me.role],
      ["Deployments", `${me.quota.active_deployments} of ${limit(me.quota.max_active_deployments)}`],
      ["Disks", `${me.quota.total_gb} GB of ${me.quota.max_total_gb === null ? "no limit" : `${me.quota.max_total_gb} GB`}`],
    ]));
    url.input.value = me.webhook_url || "";
    rotate.hidden = !me.webhook_url;
  }

  async function send(body) {
    errors.clear();
    save.disabled = rotate.disabled = true;
    try {
      const me = await api.patch("/api/users/me", body, { signal: ctx.signal });
      render(me);
      const notice = me.webhook_secret
        ? h("div", { class: "notice notice-ok", role: "status", tabindex: "-1" },
          h("p", {}, "Your webhook's secret, shown this once: keep it where your receiver reads it."),
          h("p", {}, h("code", { class: "secret" }, me.webhook_secret)))
        : h("div", { class: "notice notice-ok", role: "status", tabindex: "-1" },
          h("p", {}, me.webhook_url ? "Saved." : "Webhook removed: nothing is sent any more."));
      setChildren(shown, notice);
      notice.focus();
    } catch (error) {
      if (ctx.signal.aborted || error.name === "AbortError") return;
      if (error instanceof ApiError && error.fieldErrors.length) errors.show(error.fieldErrors);
      else errors.show([], String(error.message || error));
    } finally {
      save.disabled = rotate.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send({ webhook_url: url.input.value.trim() || null });
  });
  rotate.addEventListener("click", () => send({ rotate_webhook_secret: true }));

  render(await api.get("/api/users/me", { signal: ctx.signal }));
  return h("section", {}, pageHeader("Your account"), facts, shown, form);
}
