// Admin: users and roles; templates (create, new version, deactivate / activate).

import { api, ApiError } from "./api.js";
import {
  cell, emptyState, errorSummary, field, FormErrors, h, link, pageHeader, table, time, setChildren
} from "./dom.js";
import { diskSummary, templateLabel } from "./page-templates.js";

const ROLES = ["admin", "operator", "viewer"];
const FILESYSTEMS = ["ext4", "xfs"];

function roleSelect(id, value) {
  return h("select", { id, name: "role" }, ROLES.map((role) => h("option", { value: role, selected: role === value }, role)));
}

function flash(text) {
  return h("p", { class: "notice notice-ok", role: "status" }, text);
}

// ---------------------------------------------------------------------------------------------

export async function usersPage(ctx) {
  const list = h("div", {});
  const message = h("div", {});

  async function load() {
    const users = await api.get("/api/users", { signal: ctx.signal });
    setChildren(list, users.length ? table(["Username", "Role", "State", "Quota", "Created"],
      users.map((user) => userRow(user)), { caption: "Users" }) : emptyState("No users."));
  }

  function userRow(user) {
    const rowStatus = h("span", { class: "row-status", role: "status" });
    const select = roleSelect(`role-${user.id}`, user.role);
    const change = h("button", { type: "button", class: "secondary small" }, "Change role");
    const toggle = h("button", { type: "button", class: user.is_active ? "danger small" : "secondary small" },
      user.is_active ? "Disable" : "Enable");
    async function patch(body, done) {
      change.disabled = toggle.disabled = true;
      rowStatus.textContent = "Saving…";
      try {
        await api.patch(`/api/users/${user.id}`, body);
        setChildren(message, flash(done));
        await load();
        document.getElementById(`role-${user.id}`)?.focus();
      } catch (error) {
        setChildren(message);
        select.value = user.role; // show what is true, not what was refused
        rowStatus.textContent = error.message;
        rowStatus.className = "row-status field-error";
        change.disabled = toggle.disabled = false;
      }
    }
    change.addEventListener("click", () => {
      if (select.value !== user.role) patch({ role: select.value }, `${user.username} is now ${select.value}.`);
    });
    toggle.addEventListener("click", () => patch({ is_active: !user.is_active },
      `${user.username} is ${user.is_active ? "disabled" : "enabled again"}.`));
    const you = user.id === ctx.user.id ? h("span", { class: "hint" }, " (you)") : null;
    return h("tr", { dataset: { username: user.username } },
      cell("Username", user.username, you),
      cell("Role", h("div", { class: "inline" }, h("label", { for: `role-${user.id}`, class: "visually-hidden" },
        `Role of ${user.username}`), select, change), rowStatus),
      cell("State", h("div", { class: "inline" }, h("span", {}, user.is_active ? "active" : "disabled"), toggle)),
      cell("Quota", quotaEditor(user)),
      cell("Created", time(user.created_at)));
  }

  // The quota that applies and the use, and the user's own limits (empty: the role's default).
  function quotaEditor(user) {
    const q = user.quota;
    const of = (used, limit, unit) => `${used}${unit} ${limit === null ? "(no limit)" : `of ${limit}${unit}`}`;
    const rowStatus = h("span", { class: "row-status", role: "status" });
    const limitInput = (name, label, value) => h("span", { class: "inline" },
      h("label", { for: `${name}-${user.id}` }, label, h("span", { class: "visually-hidden" }, ` of ${user.username}`)),
      h("input", { id: `${name}-${user.id}`, name, type: "number", min: "0", step: "1", inputmode: "numeric",
        value: value ?? "", placeholder: "default", class: "quota-limit" }));
    const save = h("button", { type: "submit", class: "secondary small" }, "Save quota");
    const form = h("form", { class: "inline", novalidate: true, "aria-label": `Quota of ${user.username}` },
      limitInput("max_active_deployments", "Max deployments", user.max_active_deployments),
      limitInput("max_total_gb", "Max GB", user.max_total_gb), save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const read = (name) => {
        const text = form.elements[name].value.trim();
        return text === "" ? null : Number(text);
      };
      save.disabled = true;
      rowStatus.className = "row-status";
      rowStatus.textContent = "Saving…";
      try {
        const changed = await api.patch(`/api/users/${user.id}`, {
          max_active_deployments: read("max_active_deployments"), max_total_gb: read("max_total_gb"),
        });
        const now = changed.quota;
        setChildren(message, flash(`${user.username} may now hold ${now.max_active_deployments ?? "unlimited"} `
          + `deployments and ${now.max_total_gb === null ? "unlimited" : `${now.max_total_gb} GB`}.`));
        await load();
        document.getElementById(`max_active_deployments-${user.id}`)?.focus();
      } catch (error) {
        setChildren(message);
        rowStatus.textContent = error instanceof ApiError && error.fieldErrors.length
          ? error.fieldErrors.map((e) => `${e.loc.at(-1)}: ${e.msg}`).join("; ") : error.message;
        rowStatus.className = "row-status field-error";
        save.disabled = false;
      }
    });
    return h("div", {},
      h("p", { class: "quota-use" }, `Deployments: ${of(q.active_deployments, q.max_active_deployments, "")}; `
        + `disks: ${of(q.total_gb, q.max_total_gb, " GB")}`),
      form, rowStatus);
  }

  // Create a user.
  const summary = errorSummary();
  const errors = new FormErrors(summary);
  const username = field({ id: "new-username", label: "Username",
    input: h("input", { name: "username", autocomplete: "off", autocapitalize: "none", spellcheck: "false" }),
    hint: "3–64 letters, digits, '_', '.' or '-'." });
  const password = field({ id: "new-password", label: "Password",
    input: h("input", { name: "password", type: "password", autocomplete: "new-password" }),
    hint: "At least 8 characters." });
  const role = field({ id: "new-role", label: "Role", input: roleSelect("new-role", "operator") });
  errors.add("username", username);
  errors.add("password", password);
  errors.add("role", role);
  const form = h("form", { class: "card", novalidate: true, "aria-labelledby": "create-user" },
    h("h2", { id: "create-user" }, "Create a user"), summary,
    h("div", { class: "grid" }, username.wrapper, password.wrapper, role.wrapper),
    h("div", { class: "form-actions" }, h("button", { type: "submit" }, "Create user")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.clear();
    try {
      const created = await api.post("/api/users", {
        username: username.input.value.trim(), password: password.input.value, role: role.input.value,
      });
      form.reset();
      setChildren(message, flash(`Created ${created.username} (${created.role}).`));
      await load();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 422 && error.fieldErrors.length) errors.show(error.fieldErrors);
      else if (error.status === 409) errors.show([{ loc: ["username"], msg: error.message }]);
      else errors.show([], error.message);
    }
  });

  await load();
  return h("section", {}, pageHeader("Users"),
    h("p", { class: "hint" }, "Roles: admin (everything), operator (deploys), viewer (reads). A change applies to the user's next request."),
    h("p", { class: "hint" }, "Quota: how many deployments a user may hold at once (all but cancelled, destroyed and rejected) and how many GB their disks may add up to. Leave a limit empty for the role's default; a lower limit takes nothing away, it refuses the next launch or growth."),
    message, list, form);
}

// ---------------------------------------------------------------------------------------------

function diskEditor(index, disk, onRemove) {
  const prefix = `tdisk-${index}`;
  const input = (name, props = {}) => h("input", { name, value: disk[name] ?? "", autocomplete: "off", spellcheck: "false", ...props });
  const parts = {
    disk_type: field({ id: `${prefix}-disk_type`, label: "Disk type", input: input("disk_type") }),
    size_gb: field({ id: `${prefix}-size_gb`, label: "Size (GB)", input: input("size_gb", { type: "number", step: "1", inputmode: "numeric" }) }),
    mount_point: field({ id: `${prefix}-mount_point`, label: "Mount point", input: input("mount_point") }),
    volume_group: field({ id: `${prefix}-volume_group`, label: "Volume group", input: input("volume_group") }),
    logical_volume: field({ id: `${prefix}-logical_volume`, label: "Logical volume", input: input("logical_volume") }),
    filesystem_type: field({ id: `${prefix}-filesystem_type`, label: "Filesystem",
      input: h("select", { name: "filesystem_type" }, FILESYSTEMS.map((fs) => h("option", { value: fs, selected: fs === (disk.filesystem_type || "ext4") }, fs))) }),
  };
  const error = h("p", { class: "field-error", hidden: true, id: `${prefix}-error` });
  const remove = h("button", { type: "button", class: "secondary small" }, "Remove disk");
  const element = h("fieldset", { class: "disk" }, h("legend", {}, `Disk ${index + 1}`),
    h("div", { class: "grid" }, Object.values(parts).map((p) => p.wrapper)), error, h("div", {}, remove));
  remove.addEventListener("click", onRemove);
  return {
    element, parts, error,
    params: disk.allocation_params || {},
    read() {
      const size = parts.size_gb.input.value.trim();
      return {
        disk_type: parts.disk_type.input.value.trim(),
        size_gb: size === "" || Number.isNaN(Number(size)) ? size : Number(size),
        mount_point: parts.mount_point.input.value.trim(),
        volume_group: parts.volume_group.input.value.trim(),
        logical_volume: parts.logical_volume.input.value.trim(),
        filesystem_type: parts.filesystem_type.input.value,
        allocation_params: this.params,
      };
    },
  };
}

const EMPTY_DISK = { disk_type: "ssd", size_gb: 10, mount_point: "/data/", volume_group: "vg_data", logical_volume: "", filesystem_type: "ext4" };

export async function adminTemplatesPage(ctx) {
  const list = h("div", {});
  const message = h("div", {});
  const known = new Map(); // id -> template, active or not

  async function load() {
    const all = await api.get("/api/templates?include_inactive=true", { signal: ctx.signal });
    known.clear();
    for (const template of all) known.set(template.id, template);
    showList();
  }

  function showList() {
    const templates = [...known.values()].sort((a, b) => a.name.localeCompare(b.name) || a.version - b.version);
    setChildren(list, templates.length ? table(["Template", "Service type", "Disks", "State", "Actions"],
      templates.map((template) => {
        const toggle = h("button", { type: "button", class: template.is_active ? "danger small" : "secondary small" },
          template.is_active ? "Deactivate" : "Activate");
        toggle.addEventListener("click", async () => {
          toggle.disabled = true;
          try {
            const changed = await api.post(`/api/templates/${template.id}/${template.is_active ? "deactivate" : "activate"}`);
            known.set(changed.id, changed);
            setChildren(message, flash(`${templateLabel(changed)} is ${changed.is_active ? "active" : "deactivated"}.`));
            showList();
          } catch (error) {
            setChildren(message, h("p", { class: "notice notice-error", role: "alert" }, error.message));
            toggle.disabled = false;
          }
        });
        const newVersion = h("button", { type: "button", class: "secondary small" }, "New version");
        newVersion.addEventListener("click", () => fill(template));
        return h("tr", { dataset: { template: templateLabel(template) } },
          cell("Template", link(`/templates/${template.id}`, templateLabel(template))),
          cell("Service type", template.service_type),
          cell("Disks", template.disk_allocations.map(diskSummary).join(", ") || "none"),
          cell("State", template.is_active ? "active" : "deactivated"),
          cell("Actions", h("div", { class: "inline" }, newVersion, toggle)));
      }), { caption: "Templates" }) : emptyState("No templates yet.", "Create the first one below."));
  }

  // Create a template, or a new version of one (same name, version left empty = next).
  const summary = errorSummary();
  let disks = [];
  const errors = new FormErrors(summary);
  const name = field({ id: "tpl-name", label: "Name", input: h("input", { name: "name", autocomplete: "off", spellcheck: "false" }),
    hint: "Lowercase letters, digits, '.', '_' or '-'. The same name again makes a new version." });
  const serviceType = field({ id: "tpl-service_type", label: "Service type", input: h("input", { name: "service_type", autocomplete: "off", spellcheck: "false" }) });
  const version = field({ id: "tpl-version", label: "Version", input: h("input", { name: "version", type: "number", min: "1", step: "1" }),
    hint: "Leave empty for the next version." });
  const configuration = field({ id: "tpl-configuration", label: "Configuration (JSON object)",
    input: h("textarea", { name: "configuration", rows: "6", spellcheck: "false" }, "{}"),
    hint: "Service defaults a deployment may change (same type). Orchestration settings go under \"provisio\"." });
  errors.add("name", name);
  errors.add("service_type", serviceType);
  errors.add("version", version);
  errors.add("configuration", configuration);
  const diskList = h("div", {});
  const disksError = h("p", { class: "field-error", hidden: true, id: "tpl-disks-error" });
  const addDisk = h("button", { type: "button", class: "secondary small" }, "Add disk");
  const disksSet = h("fieldset", {}, h("legend", {}, "Disks"), diskList, disksError, addDisk);

  function showDisks(values) {
    for (const key of [...errors.fields.keys()]) if (key.startsWith("disk_allocations")) errors.fields.delete(key);
    errors.add("disk_allocations", { input: disksSet, error: disksError });
    disks = values.map((value, index) => {
      const editor = diskEditor(index, value, () => {
        showDisks(disks.filter((d) => d !== editor).map((d) => d.read()));
        addDisk.focus();
      });
      errors.add(`disk_allocations.${index}`, { input: editor.element, error: editor.error });
      for (const [key, part] of Object.entries(editor.parts)) errors.add(`disk_allocations.${index}.${key}`, part);
      return editor;
    });
    setChildren(diskList, ...disks.map((d) => d.element));
  }
  addDisk.addEventListener("click", () => {
    showDisks([...disks.map((d) => d.read()), { ...EMPTY_DISK }]);
    disks.at(-1).parts.disk_type.input.focus();
  });

  const formTitle = h("h2", { id: "create-template" }, "Create a template");
  const submit = h("button", { type: "submit" }, "Create template");
  const form = h("form", { class: "card", novalidate: true, "aria-labelledby": "create-template" },
    formTitle, summary, h("div", { class: "grid" }, name.wrapper, serviceType.wrapper, version.wrapper),
    configuration.wrapper, disksSet, h("div", { class: "form-actions" }, submit));

  function fill(template) {
    errors.clear();
    name.input.value = template.name;
    serviceType.input.value = template.service_type;
    version.input.value = "";
    configuration.input.value = JSON.stringify(template.configuration, null, 2);
    showDisks(template.disk_allocations);
    formTitle.textContent = `New version of ${template.name}`;
    submit.textContent = "Create new version";
    name.input.focus();
  }

  function reset() {
    form.reset();
    configuration.input.value = "{}";
    formTitle.textContent = "Create a template";
    submit.textContent = "Create template";
    showDisks([{ ...EMPTY_DISK }]);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.clear();
    let config;
    try {
      config = JSON.parse(configuration.input.value || "{}");
    } catch (error) {
      errors.show([{ loc: ["configuration"], msg: `Not valid JSON: ${error.message}` }]);
      return;
    }
    const body = {
      name: name.input.value.trim(),
      service_type: serviceType.input.value.trim(),
      configuration: config,
      disk_allocations: disks.map((d) => d.read()),
    };
    if (version.input.value.trim()) body.version = Number(version.input.value);
    submit.disabled = true;
    try {
      const created = await api.post("/api/templates", body);
      setChildren(message, flash(`Created ${templateLabel(created)}.`));
      reset();
      await load();
      message.querySelector("p")?.focus?.();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 422 && error.fieldErrors.length) errors.show(error.fieldErrors);
      else if (error.status === 409) errors.show([{ loc: ["version"], msg: error.message }]);
      else errors.show([], error.message);
    } finally {
      submit.disabled = false;
    }
  });

  showDisks([{ ...EMPTY_DISK }]);
  await load();
  return h("section", {}, pageHeader("Manage templates"),
    h("p", { class: "hint" }, "A template in use is never edited: a change is a new version. Deactivated templates take no new deployments."),
    message, list, form);
}
