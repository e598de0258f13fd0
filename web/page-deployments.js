import { api, ApiError } from "./api.js";
import {
  badge, buttonLink, cell, emptyState, errorSummary, field, FormErrors, h, link, pageHeader,
  statusLabel, time, setChildren
} from "./dom.js";
import { SETTLED_STATUSES, STATUSES, TERMINAL_STATUSES } from "./vocabulary.js";
import { canDeploy, RESERVED_KEY, sizeBounds, templateLabel } from "./page-templates.js";

const LIST_REFRESH_MS = 4000;
const FILESYSTEMS = ["ext4", "xfs"];

// ---------------------------------------------------------------------------------------------
// Deployments list: filters and cursor in the address, rows refreshed in place while visible.

export async function deploymentsPage(ctx) {
  const status = ctx.query.get("status") || "";
  const templateId = ctx.query.get("template_id") || "";
  const cursor = ctx.query.get("cursor") || "";
  const expiring = ctx.query.get("expiring_within_s") || "";
  const isAdmin = ctx.user.role === "admin";

  const params = new URLSearchParams();
  if (status) params.set("status", status);
  if (templateId) params.set("template_id", templateId);
  if (expiring) params.set("expiring_within_s", expiring);
  if (cursor) params.set("cursor", cursor);
  const listUrl = `/api/deployments?${params}`;

  const [templates, firstPage] = await Promise.all([
    api.get("/api/templates", { signal: ctx.signal }),
    api.get(listUrl, { signal: ctx.signal }),
  ]);

  const filterForm = filters(ctx, templates, firstPage.items, { status, templateId, expiring });
  const body = h("tbody", {});
  const rows = new Map(); // deployment id -> <tr>
  const region = h("div", { class: "list-region" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const liveNote = h("p", { class: "hint live-note" });

  const headers = ["Name", "Status", "Template", ...(isAdmin ? ["Owner"] : []), "Created"];
  const tableView = h("div", { class: "table-wrap" },
    h("table", { class: "responsive deployments" },
      h("caption", { class: "visually-hidden" }, "Deployments, newest first"),
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      body));

  function rowFor(item) {
    let tr = rows.get(item.id);
    if (!tr) {
      tr = h("tr", { dataset: { id: String(item.id) } },
        cell("Name", link(`/deployments/${item.id}`, item.deployment_name)),
        cell("Status", badge(item.status)),
        cell("Template", item.template_name),
        isAdmin ? cell("Owner", item.username) : null,
        cell("Created", time(item.created_at)));
      rows.set(item.id, tr);
    } else if (tr.dataset.status !== item.status) {
      setChildren(tr.querySelector("[data-label=Status]"), badge(item.status));
    }
    tr.dataset.status = item.status;
    return tr;
  }

  function show(page) {
    const filtered = Boolean(status || templateId || expiring);
    if (!page.items.length) {
      rows.clear();
      setChildren(region, cursor
        ? emptyState("No more deployments.", null, link("/deployments", "Back to the newest"))
        : filtered
          ? emptyState("No deployments match these filters.", null, link("/deployments", "Clear filters"))
          : emptyState("No deployments yet.",
            canDeploy(ctx.user) ? "Pick a template and launch your first one."
              : "Deployments you can see will appear here.",
            canDeploy(ctx.user) ? buttonLink("/deployments/new", "New deployment") : null));
    } else {
      // Update in place: unchanged rows stay put, so focus and scrolling survive a refresh.
      let ref = body.firstChild;
      const seen = new Set();
      for (const item of page.items) {
        const tr = rowFor(item);
        seen.add(item.id);
        if (tr === ref) ref = ref.nextSibling;
        else body.insertBefore(tr, ref);
      }
      for (const [id, tr] of rows) {
        if (!seen.has(id)) {
          tr.remove();
          rows.delete(id);
        }
      }
      if (region.firstChild !== tableView) setChildren(region, tableView);
    }
    const links = [];
    if (cursor) {
      const first = new URLSearchParams(params);
      first.delete("cursor");
      links.push(link(`/deployments?${first}`, "← Newest"));
    }
    if (page.next_cursor) {
      const next = new URLSearchParams(params);
      next.set("cursor", page.next_cursor);
      links.push(link(`/deployments?${next}`, "Older →"));
    }
    setChildren(pager, ...links);
  }

  show(firstPage);
  const refreshed = () => {
    liveNote.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${LIST_REFRESH_MS / 1000} s.`;
  };
  refreshed();

  // Live: re-read this page while it is on screen and the tab is visible.
  const timer = setInterval(async () => {
    if (document.visibilityState !== "visible") return;
    try {
      show(await api.get(listUrl, { signal: ctx.signal }));
      refreshed();
    } catch (error) {
      if (error.name !== "AbortError") liveNote.textContent = `Could not refresh: ${error.message}`;
    }
  }, LIST_REFRESH_MS);
  ctx.signal.addEventListener("abort", () => clearInterval(timer));

  return h("section", {},
    pageHeader(isAdmin ? "All deployments" : "My deployments",
      canDeploy(ctx.user) ? buttonLink("/deployments/new", "New deployment") : null),
    filterForm, region, pager, liveNote);
}

// Lease ends the list may be narrowed to (GET /api/deployments?expiring_within_s=…).
const EXPIRING = [["1 hour", 3600], ["1 day", 86400], ["7 days", 7 * 86400], ["30 days", 30 * 86400]];

function filters(ctx, templates, items, { status, templateId, expiring }) {
  // Every status, grouped by where a deployment stands: still moving, settled (it may be
  // destroyed or retried), or gone (nothing of it is left).
  const option = (s) => h("option", { value: s, selected: s === status }, statusLabel(s));
  const moving = STATUSES.filter((s) => !SETTLED_STATUSES.includes(s) && !TERMINAL_STATUSES.includes(s));
  const statusSelect = h("select", { name: "status" },
    h("option", { value: "" }, "Any status"),
    h("optgroup", { label: "In progress" }, moving.map(option)),
    h("optgroup", { label: "Settled" }, SETTLED_STATUSES.map(option)),
    h("optgroup", { label: "Ended" }, TERMINAL_STATUSES.map(option)));
  // Active templates, plus any the shown deployments (or the current filter) refer to.
  const names = new Map(templates.map((t) => [String(t.id), templateLabel(t)]));
  for (const item of items) if (!names.has(String(item.template_id))) names.set(String(item.template_id), item.template_name);
  if (templateId && !names.has(templateId)) names.set(templateId, `template #${templateId}`);
  const templateSelect = h("select", { name: "template_id" },
    h("option", { value: "" }, "Any template"),
    [...names].map(([id, name]) => h("option", { value: id, selected: id === templateId }, name)));

  const expiringSelect = h("select", { name: "expiring_within_s", id: "filter-expiring" },
    h("option", { value: "" }, "Any time, or never"),
    EXPIRING.map(([label, seconds]) => h("option",
      { value: String(seconds), selected: String(seconds) === expiring }, `within ${label}`)));

  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter deployments" },
    h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), statusSelect),
    h("div", { class: "field" }, h("label", { for: "filter-template" }, "Template"), templateSelect),
    h("div", { class: "field" }, h("label", { for: "filter-expiring" }, "Lease ends"), expiringSelect),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "secondary" }, "Filter"),
      status || templateId || expiring ? link("/deployments", "Clear") : null));
  statusSelect.id = "filter-status";
  templateSelect.id = "filter-template";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (statusSelect.value) next.set("status", statusSelect.value);
    if (templateSelect.value) next.set("template_id", templateSelect.value);
    if (expiringSelect.value) next.set("expiring_within_s", expiringSelect.value);
    ctx.navigate(`/deployments${next.size ? `?${next}` : ""}`);
  });
  return form;
}

// ---------------------------------------------------------------------------------------------
// New deployment. One Idempotency-Key per form instance: a double click, or a retry after a lost
// answer, reaches the same deployment.

function jsonType(value) {
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  if (typeof value === "string") return "string";
  return null; // objects, arrays, null: not editable per deployment
}

const SCALAR_TYPES = ["boolean", "integer", "number", "string"];

// What a deployment may set. A template that declares `provisio.overrides` (a JSON Schema per
// key) allows exactly those keys; otherwise every default key, keeping the default's type.
export function editableConfiguration(configuration) {
  const config = configuration || {};
  const declared = config[RESERVED_KEY]?.overrides;
  const defaults = Object.entries(config).filter(([key]) => key !== RESERVED_KEY);
  if (declared && typeof declared === "object" && !Array.isArray(declared)) {
    const editable = Object.entries(declared).map(([key, schema]) => {
      const types = [].concat(schema?.type ?? []).filter((t) => SCALAR_TYPES.includes(t));
      const type = Array.isArray(schema?.enum) ? "enum" : types[0] || jsonType(config[key]) || "string";
      return { key, type, schema: schema || {}, initial: config[key] };
    });
    return { editable, fixed: defaults.filter(([key]) => !(key in declared)) };
  }
  return {
    editable: defaults.filter(([, value]) => jsonType(value))
      .map(([key, value]) => ({ key, type: jsonType(value), schema: {}, initial: value })),
    fixed: defaults.filter(([, value]) => !jsonType(value)),
  };
}

export function configInput({ key, type, schema, initial }) {
  if (type === "enum") {
    return h("select", { name: key },
      initial === undefined ? h("option", { value: "" }, "(template default)") : null,
      schema.enum.map((option, index) => h("option", { value: String(index),
        selected: JSON.stringify(option) === JSON.stringify(initial) }, JSON.stringify(option))));
  }
  if (type === "boolean") return h("input", { type: "checkbox", name: key, checked: initial === true });
  if (type === "string") {
    return h("input", { type: "text", name: key, value: initial ?? "", spellcheck: "false",
      maxlength: Number.isInteger(schema.maxLength) ? String(schema.maxLength) : null });
  }
  return h("input", { type: "number", name: key, value: initial === undefined ? "" : String(initial),
    step: type === "integer" ? "1" : "any", inputmode: type === "integer" ? "numeric" : "decimal",
    min: typeof schema.minimum === "number" ? String(schema.minimum) : null,
    max: typeof schema.maximum === "number" ? String(schema.maximum) : null });
}

function configHint({ type, schema, initial }) {
  const parts = [];
  if (schema.description) parts.push(String(schema.description));
  if (type !== "boolean" && type !== "enum") parts.push(type);
  if (typeof schema.minimum === "number" || typeof schema.maximum === "number") {
    parts.push(`${schema.minimum ?? "…"}–${schema.maximum ?? "…"}`);
  }
  if (initial !== undefined && type !== "boolean") parts.push(`default ${JSON.stringify(initial)}`);
  return parts.length ? parts.join(", ") : null;
}

// The value of a config input in its JSON type; `skip` when it leaves the template's default.
export function readConfig(input, { type, schema, initial }) {
  if (type === "enum") return input.value === "" ? { skip: true } : { value: schema.enum[Number(input.value)] };
  if (type === "boolean") return { value: input.checked };
  if (type === "string") return input.value === "" && initial === undefined ? { skip: true } : { value: input.value };
  if (input.validity.badInput) return { problem: "Enter a number." };
  if (input.value.trim() === "") return initial === undefined ? { skip: true } : { problem: "Enter a number." };
  return { value: Number(input.value) };
}

export async function newDeploymentPage(ctx) {
  if (!canDeploy(ctx.user)) {
    return h("section", {}, pageHeader("New deployment"),
      h("p", { class: "notice" }, `Your role (${ctx.user.role}) can look at deployments but not create them. `,
        "Ask an admin for the operator role."));
  }
  const templates = await api.get("/api/templates", { signal: ctx.signal });
  if (!templates.length) {
    return h("section", {}, pageHeader("New deployment"),
      emptyState("No active templates to deploy from.", ctx.user.role === "admin"
        ? null : "An admin has to create a template first.",
      ctx.user.role === "admin" ? buttonLink("/admin/templates", "Create a template") : null));
  }

  const idempotencyKey = crypto.randomUUID();
  const summary = errorSummary();
  let sentDisks = []; // mount points, in the order of the request's disk_allocations
  let shownTemplate = null;
  const errors = new FormErrors(summary, (loc) => {
    const path = loc[0] === "body" ? loc.slice(1) : loc;
    if (path[0] === "disk_allocations" && path.length >= 2) {
      const index = shownTemplate.disk_allocations.findIndex((d) => d.mount_point === sentDisks[path[1]]);
      return ["disk", index, ...path.slice(2)].join(".");
    }
    return path.join(".");
  });

  const wanted = ctx.query.get("template");
  const templateSelect = h("select", { name: "template_id" },
    templates.map((t) => h("option", { value: String(t.id), selected: String(t.id) === wanted },
      `${templateLabel(t)} — ${t.service_type}`)));
  const templateField = field({ id: "template_id", label: "Template", input: templateSelect });
  const nameField = field({
    id: "deployment_name", label: "Deployment name",
    input: h("input", { name: "deployment_name", autocomplete: "off", spellcheck: "false",
      autocapitalize: "none", maxlength: "63", required: true }),
    hint: "Lowercase letters, digits and '-', 1–63 characters, starting and ending with a letter or digit.",
  });
  errors.add("template_id", templateField);
  errors.add("deployment_name", nameField);

  const templateFacts = h("div", { class: "template-facts" });
  const configSet = h("fieldset", {}, h("legend", {}, "Configuration"));
  const diskSet = h("fieldset", {}, h("legend", {}, "Disks"));
  let configInputs = []; // {key, type, schema, initial, input}
  let diskInputs = []; // {disk, size, filesystem}

  function showTemplate() {
    const template = templates.find((t) => String(t.id) === templateSelect.value);
    shownTemplate = template;
    for (const key of [...errors.fields.keys()]) {
      if (key.startsWith("configuration") || key.startsWith("disk")) errors.fields.delete(key);
    }
    setChildren(templateFacts, h("p", { class: "hint" }, `Service type ${template.service_type}. `,
      link(`/templates/${template.id}`, "Template details")));

    configInputs = [];
    const { editable, fixed } = editableConfiguration(template.configuration);
    const configFields = editable.map((spec) => {
      const input = configInput(spec);
      const f = field({ id: `config-${spec.key}`, label: spec.key, input, hint: configHint(spec) });
      errors.add(`configuration.${spec.key}`, f);
      configInputs.push({ ...spec, input });
      return f.wrapper;
    });
    const readOnly = fixed.map(([key, value]) =>
      h("li", {}, h("code", {}, key), " = ", h("code", {}, JSON.stringify(value))));
    const configError = h("p", { class: "field-error", hidden: true, id: "configuration-error" });
    errors.add("configuration", { input: configSet, error: configError });
    setChildren(configSet, h("legend", {}, "Configuration"),
      configFields.length ? h("div", { class: "grid" }, configFields)
        : h("p", { class: "hint" }, "This template has no settings a deployment can change."),
      readOnly.length ? [h("p", { class: "hint" }, "Fixed by the template:"), h("ul", { class: "plain" }, readOnly)] : null,
      configError);

    diskInputs = [];
    const diskFields = template.disk_allocations.map((disk, index) => {
      const [low, high] = sizeBounds(disk);
      const size = field({
        id: `disk-${index}-size_gb`, label: "Size (GB)",
        input: h("input", { type: "number", name: "size_gb", value: String(disk.size_gb), min: String(low),
          max: String(high), step: "1", inputmode: "numeric" }),
        hint: `${low}–${high} GB`,
      });
      const filesystem = field({
        id: `disk-${index}-filesystem_type`, label: "Filesystem",
        input: h("select", { name: "filesystem_type" },
          FILESYSTEMS.map((fs) => h("option", { value: fs, selected: fs === disk.filesystem_type }, fs))),
      });
      const diskError = h("p", { class: "field-error", hidden: true, id: `disk-${index}-error` });
      const group = h("fieldset", { class: "disk" },
        h("legend", {}, h("code", {}, disk.mount_point), ` — ${disk.disk_type}, ${disk.volume_group}/${disk.logical_volume}`),
        h("div", { class: "grid" }, size.wrapper, filesystem.wrapper), diskError);
      errors.add(`disk.${index}`, { input: group, error: diskError });
      errors.add(`disk.${index}.size_gb`, size);
      errors.add(`disk.${index}.filesystem_type`, filesystem);
      diskInputs.push({ disk, size: size.input, filesystem: filesystem.input });
      return group;
    });
    setChildren(diskSet, h("legend", {}, "Disks"),
      diskFields.length ? diskFields : h("p", { class: "hint" }, "This template allocates no disks."));
  }
  templateSelect.addEventListener("change", () => {
    errors.clear();
    showTemplate();
  });
  showTemplate();

  const submit = h("button", { type: "submit" }, "Create deployment");
  const form = h("form", { class: "card deployment-form", novalidate: true, "aria-label": "New deployment" },
    summary, templateField.wrapper, templateFacts, nameField.wrapper, configSet, diskSet,
    h("div", { class: "form-actions" }, submit, link("/deployments", "Cancel")));

  let busy = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return; // the Idempotency-Key covers what gets past this (retries, other tabs)
    errors.clear();
    const template = shownTemplate;
    const local = [];
    const configuration = {};
    for (const spec of configInputs) {
      const { value, problem, skip } = readConfig(spec.input, spec);
      if (problem) local.push({ loc: ["configuration", spec.key], msg: problem });
      else if (!skip && JSON.stringify(value) !== JSON.stringify(spec.initial)) configuration[spec.key] = value;
    }
    const disks = [];
    diskInputs.forEach(({ disk, size, filesystem }, index) => {
      const override = { mount_point: disk.mount_point };
      if (size.validity.badInput || size.value.trim() === "") {
        local.push({ loc: ["disk", index, "size_gb"], msg: "Enter a size in GB." });
        return;
      }
      if (Number(size.value) !== disk.size_gb) override.size_gb = Number(size.value);
      if (filesystem.value !== disk.filesystem_type) override.filesystem_type = filesystem.value;
      if (Object.keys(override).length > 1) disks.push(override);
    });
    if (local.length) {
      // Local problems use the form's own keys, not the API's loc.
      const resolve = errors.resolve;
      errors.resolve = (loc) => loc.join(".");
      errors.show(local);
      errors.resolve = resolve;
      return;
    }
    sentDisks = disks.map((d) => d.mount_point);
    const body = {
      template_id: template.id,
      deployment_name: nameField.input.value.trim(),
      configuration,
      disk_allocations: disks,
    };
    busy = true;
    submit.disabled = true;
    submit.textContent = "Creating…";
    try {
      const created = await api.post("/api/deployments", body, {
        headers: { "Idempotency-Key": idempotencyKey },
      });
      ctx.navigate(`/deployments/${created.id}`);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 422 && error.fieldErrors.length) errors.show(error.fieldErrors);
      else if (error.status === 409) errors.show([{ loc: ["deployment_name"], msg: error.message }]);
      else errors.show([], error.message);
    } finally {
      busy = false;
      submit.disabled = false;
      submit.textContent = "Create deployment";
    }
  });

  return h("section", {}, pageHeader("New deployment"),
    h("p", { class: "hint" }, "Pick a template, name the deployment, and adjust what the template allows."),
    form);
}
