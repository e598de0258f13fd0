import { api } from "./api.js";
import { MASK } from "./vocabulary.js";
import {
  buttonLink, cell, definitionList, emptyState, h, link, pageHeader, table, time,
} from "./dom.js";

export const RESERVED_KEY = "provisio";
export const canDeploy = (user) => user.role === "admin" || user.role === "operator";

export function diskSummary(disk) {
  return `${disk.mount_point} ${disk.size_gb} GB ${disk.filesystem_type}`;
}

export function templateLabel(template) {
  return `${template.name} v${template.version}`;
}

export async function templatesPage(ctx) {
  const templates = await api.get("/api/templates", { signal: ctx.signal });
  const actions = [];
  if (canDeploy(ctx.user)) actions.push(buttonLink("/deployments/new", "New deployment"));
  if (ctx.user.role === "admin") actions.push(buttonLink("/admin/templates", "Manage templates", "secondary"));

  if (!templates.length) {
    return h("section", {}, pageHeader("Templates", ...actions),
      emptyState("No active templates.", ctx.user.role === "admin"
        ? "Create one to let people deploy." : "An admin has to create one before anyone can deploy."));
  }
  const rows = templates.map((template) => h("tr", {},
    cell("Name", link(`/templates/${template.id}`, template.name)),
    cell("Version", String(template.version)),
    cell("Service type", template.service_type),
    cell("Disks", template.disk_allocations.length
      ? h("ul", { class: "plain" }, template.disk_allocations.map((d) => h("li", {}, diskSummary(d))))
      : "none"),
    cell("", canDeploy(ctx.user)
      ? buttonLink(`/deployments/new?template=${template.id}`, "Deploy", "small")
      : null),
  ));
  return h("section", {}, pageHeader("Templates", ...actions),
    table(["Name", "Version", "Service type", "Disks", h("span", { class: "visually-hidden" }, "Actions")],
      rows, { caption: "Active templates" }));
}

// `secret(key)`: a value the API masked (a deployment's secrets), shown as the mask itself.
export function configurationTable(configuration, { secret = () => false } = {}) {
  const entries = Object.entries(configuration || {}).filter(([key]) => key !== RESERVED_KEY);
  if (!entries.length) return h("p", { class: "hint" }, "No configuration keys.");
  return table(["Key", "Value"], entries.map(([key, value]) => h("tr", {},
    cell("Key", h("code", {}, key)),
    cell("Value", h("code", {}, secret(key) ? MASK : JSON.stringify(value))))),
  { caption: "Configuration" });
}

// `state`: a deployment's disks also say where each stands on its host (planned, allocated,
// released) and since when.
export function disksTable(disks, { bounds = false, state = false } = {}) {
  if (!disks.length) return h("p", { class: "hint" }, "No disks.");
  const headers = ["Mount point", "Size", "Filesystem", "Disk type", "Volume group / LV"];
  if (bounds) headers.push("Size limits");
  if (state) headers.push("State");
  return table(headers, disks.map((disk) => h("tr", { dataset: { mount: disk.mount_point } },
    cell("Mount point", h("code", {}, disk.mount_point)),
    cell("Size", `${disk.size_gb} GB`),
    cell("Filesystem", disk.filesystem_type),
    cell("Disk type", disk.disk_type),
    cell("Volume group / LV", `${disk.volume_group} / ${disk.logical_volume}`),
    bounds ? cell("Size limits", sizeBounds(disk).join("–") + " GB") : null,
    state ? cell("State", h("span", { class: `disk-state disk-state-${disk.state}`, dataset: { state: disk.state } },
      disk.state), " ", h("span", { class: "hint" }, "since ", time(disk.state_changed_at))) : null,
  )), { caption: "Disks" });
}

export const MAX_DISK_GB = 16384;
export function sizeBounds(disk) {
  const params = disk.allocation_params || {};
  const low = Number.isInteger(params.min_size_gb) && params.min_size_gb >= 1 ? params.min_size_gb : 1;
  const high = Number.isInteger(params.max_size_gb) ? Math.min(params.max_size_gb, MAX_DISK_GB) : MAX_DISK_GB;
  return [low, high];
}

export async function templatePage(ctx) {
  const template = await api.get(`/api/templates/${ctx.params.id}`, { signal: ctx.signal });
  ctx.setTitle(templateLabel(template));
  const actions = [];
  if (canDeploy(ctx.user) && template.is_active) {
    actions.push(buttonLink(`/deployments/new?template=${template.id}`, "Deploy this template"));
  }
  const orchestration = template.configuration?.[RESERVED_KEY];
  return h("section", {},
    h("p", { class: "breadcrumb" }, link("/templates", "Templates"), " / ", template.name),
    pageHeader(templateLabel(template), ...actions),
    template.is_active ? null
      : h("p", { class: "notice" }, "This template is deactivated: no new deployments can use it."),
    definitionList([
      ["Name", template.name],
      ["Version", String(template.version)],
      ["Service type", template.service_type],
      ["Active", template.is_active ? "yes" : "no"],
      ["Created", time(template.created_at)],
    ]),
    h("h2", {}, "Configuration"),
    h("p", { class: "hint" }, "Defaults. A deployment may change these keys, keeping each value's type."),
    configurationTable(template.configuration),
    orchestration ? [h("h2", {}, "Orchestration settings"),
      h("pre", { class: "code" }, JSON.stringify(orchestration, null, 2))] : null,
    h("h2", {}, "Disks"),
    disksTable(template.disk_allocations, { bounds: true }),
  );
}
