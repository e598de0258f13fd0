// Admin: the audit trail (GET /api/audit): who did what to which thing, from where, before → after.
// Filters and the page's cursor live in the address, so a filtered view can be shared.

import { api, ApiError } from "./api.js";
import { cell, emptyState, errorSummary, field, FormErrors, h, link, pageHeader, setChildren, table, time } from "./dom.js";
import { AUDIT_ACTIONS, AUDIT_TARGETS } from "./vocabulary.js";

const FILTERS = ["actor", "action", "target_type", "target_id", "since", "until"];
const SHOWN_ON_CREATE = 4; // a creation lists its first few fields, then how many more
// A creation's fields that name it come first; its id and time are the row's own already.
const NAMING = ["name", "username", "role", "version", "service_type", "status"];
const SAID_ELSEWHERE = new Set(["id", "created_at"]);

// A nested object as dotted paths to its leaves: {disks: {"/data": {size_gb: 10}}} →
// {"disks./data.size_gb": 10}. Arrays are leaves.
function flatten(value, prefix = "", into = new Map()) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (!keys.length && prefix) into.set(prefix, value);
    for (const key of keys) flatten(value[key], prefix ? `${prefix}.${key}` : key, into);
  } else if (prefix) {
    into.set(prefix, value);
  }
  return into;
}

function shown(value) {
  if (value === undefined) return "—";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

// Only what changed: "status: succeeded → destroying"; a creation shows what it made.
export function changeSummary(before, after) {
  const old = flatten(before);
  const now = flatten(after);
  if (before === null || before === undefined) {
    const rank = (path) => (NAMING.includes(path) ? NAMING.indexOf(path) : NAMING.length);
    const fields = [...now].filter(([path, value]) => !SAID_ELSEWHERE.has(path) && value !== null)
      .sort(([a], [b]) => rank(a) - rank(b));
    const items = fields.slice(0, SHOWN_ON_CREATE).map(([path, value]) =>
      h("li", {}, h("span", { class: "audit-key" }, path), ": ", shown(value)));
    const more = fields.length - SHOWN_ON_CREATE;
    return h("div", { class: "audit-change" }, h("span", { class: "hint" }, "new:"),
      h("ul", {}, items, more > 0 ? h("li", { class: "hint" }, `…and ${more} more`) : null));
  }
  const paths = [...new Set([...old.keys(), ...now.keys()])]
    .filter((path) => JSON.stringify(old.get(path)) !== JSON.stringify(now.get(path)));
  if (!paths.length) return h("span", { class: "hint" }, "no change");
  return h("ul", { class: "audit-change" }, paths.map((path) => h("li", {},
    h("span", { class: "audit-key" }, path), ": ", h("del", {}, shown(old.get(path))),
    " → ", h("ins", {}, shown(now.get(path))))));
}

function targetLink(target) {
  const label = `${target.type} #${target.id}`;
  if (target.type === "deployment") return link(`/deployments/${target.id}`, label);
  if (target.type === "template") return link(`/templates/${target.id}`, label);
  return h("span", {}, label);
}

// A datetime-local value (local time, no zone) as an ISO instant, and back.
const toInstant = (local) => (local ? new Date(local).toISOString() : "");
function toLocal(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function filterForm(ctx, values) {
  const summary = errorSummary();
  const errors = new FormErrors(summary, (loc) => loc.filter((part) => part !== "query").join("."));
  const actor = field({ id: "audit-actor", label: "Who (username)",
    input: h("input", { name: "actor", type: "text", value: values.actor || "", autocomplete: "off", maxlength: "64" }) });
  const action = field({ id: "audit-action", label: "Action",
    input: h("select", { name: "action" }, h("option", { value: "" }, "Any action"),
      AUDIT_ACTIONS.map((a) => h("option", { value: a, selected: a === values.action }, a))) });
  const targetType = field({ id: "audit-target-type", label: "Target",
    input: h("select", { name: "target_type" }, h("option", { value: "" }, "Anything"),
      AUDIT_TARGETS.map((t) => h("option", { value: t, selected: t === values.target_type }, t))) });
  const targetId = field({ id: "audit-target-id", label: "Target id",
    input: h("input", { name: "target_id", type: "text", inputmode: "numeric", pattern: "[0-9]*", value: values.target_id || "" }) });
  const since = field({ id: "audit-since", label: "From",
    input: h("input", { name: "since", type: "datetime-local", value: toLocal(values.since) }) });
  const until = field({ id: "audit-until", label: "Before",
    input: h("input", { name: "until", type: "datetime-local", value: toLocal(values.until) }) });
  for (const [key, f] of [["actor", actor], ["action", action], ["target_type", targetType],
    ["target_id", targetId], ["since", since], ["until", until]]) errors.add(key, f);
  const filtered = FILTERS.some((name) => values[name]);
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter the audit trail", novalidate: true },
    actor.wrapper, action.wrapper, targetType.wrapper, targetId.wrapper, since.wrapper, until.wrapper,
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "secondary" }, "Filter"),
      filtered ? link("/admin/audit", "Clear") : null));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    const set = (name, value) => { if (value) next.set(name, value); };
    set("actor", actor.input.value.trim());
    set("action", action.input.value);
    set("target_type", targetType.input.value);
    set("target_id", targetId.input.value.trim());
    set("since", toInstant(since.input.value));
    set("until", toInstant(until.input.value));
    ctx.navigate(`/admin/audit${next.size ? `?${next}` : ""}`);
  });
  return { form, summary, errors };
}

export async function auditPage(ctx) {
  const values = Object.fromEntries(FILTERS.map((name) => [name, ctx.query.get(name) || ""]));
  const cursor = ctx.query.get("cursor") || "";
  const params = new URLSearchParams();
  for (const name of FILTERS) if (values[name]) params.set(name, values[name]);
  // Entries per page: the API's default unless the address says (kept across pages).
  if (ctx.query.get("limit")) params.set("limit", ctx.query.get("limit"));
  const { form, summary, errors } = filterForm(ctx, values);
  const region = h("div", { class: "list-region" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });

  let page = null;
  try {
    const asked = new URLSearchParams(params);
    if (cursor) asked.set("cursor", cursor);
    page = await api.get(`/api/audit?${asked}`, { signal: ctx.signal });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 422) throw error;
    // A filter the API refused: said at its field (and focused) once the page is on screen.
    const fieldErrors = error.fieldErrors;
    setTimeout(() => errors.show(fieldErrors, fieldErrors.length ? null : error.message), 0);
  }

  if (page === null) {
    setChildren(region, emptyState("These filters were refused.", "Correct them and filter again."));
  } else if (!page.items.length) {
    const filtered = FILTERS.some((name) => values[name]);
    setChildren(region, cursor
      ? emptyState("No older entries.", null, link(`/admin/audit?${params}`, "Back to the newest"))
      : emptyState(filtered ? "No entries match these filters." : "Nothing recorded yet.",
        filtered ? null : "Admin actions and operations on deployments will appear here.",
        filtered ? link("/admin/audit", "Clear filters") : null));
  } else {
    setChildren(region, table(["When", "Who", "From", "Action", "Target", "Before → after"],
      page.items.map((entry) => h("tr", { dataset: { id: String(entry.id), action: entry.action } },
        cell("When", time(entry.at)),
        // One child per cell: on a phone the cell is a grid of its label and its content.
        cell("Who", h("span", {}, entry.actor.username, " ", h("span", { class: "role" }, entry.actor.role))),
        cell("From", h("code", {}, entry.address)),
        cell("Action", h("code", {}, entry.action)),
        cell("Target", targetLink(entry.target)),
        cell("Before → after", changeSummary(entry.before, entry.after)))),
      { caption: "Audit entries, newest first", className: "audit" }));
    const links = [];
    if (cursor) links.push(link(`/admin/audit${params.size ? `?${params}` : ""}`, "← Newest"));
    if (page.next_cursor) {
      const next = new URLSearchParams(params);
      next.set("cursor", page.next_cursor);
      links.push(link(`/admin/audit?${next}`, "Next page →"));
    }
    setChildren(pager, ...links);
  }
  return h("div", {}, pageHeader("Audit"),
    h("p", { class: "hint" }, "Every admin action and every operation on a deployment: who, when, from which address, and what it changed. Entries are never edited or removed."),
    summary, form, region, pager);
}
