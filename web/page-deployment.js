// One deployment: the seed's "fetch with details", a step timeline, per-task/per-host progress and
// the failure reason, kept live by GET /api/deployments/{id}/events.

import { api, followEvents } from "./api.js";
import {
  announce, badge, cell, definitionList, externalLink, h, link, statusLabel, table, time,
  setChildren
} from "./dom.js";
import { configurationTable, disksTable } from "./page-templates.js";
import {
  EVENT, FAILING_EVENTS, FINAL_STATUSES, HISTORY_STATUS, HOST_STATS_KEYS, RESULT_OUTCOMES as OUTCOMES,
  STATUS
} from "./vocabulary.js";

const STEPS = [
  { label: "Created", statuses: [HISTORY_STATUS.CREATED] },
  { label: "Disks allocated", statuses: [STATUS.PROVISIONING] },
  { label: "Pipeline triggered", statuses: [STATUS.QUEUED] },
  { label: "Running", statuses: [STATUS.RUNNING] },
  { label: "Result", statuses: FINAL_STATUSES },
];

// History rows stored from the callback plugin carry the Ansible event; the workflow's steps do not.
const isEvent = (row) => typeof row.details?.event === "string" && "counter" in row.details;

// What a host's result says: its msg (or why it was skipped), and a failed command's stderr,
// folded. `unfolded` holds the history ids of the stderr the user opened: a re-render keeps them.
function resultMessage(row, unfolded) {
  const data = row.details.data || {};
  if (data.censored) return "(censored: no_log)";
  const text = data.msg || data.skip_reason || "";
  if (!data.stderr) return text;
  const details = h("details", { class: "stderr", open: unfolded.has(row.id) },
    h("summary", {}, "stderr"), h("pre", {}, data.stderr));
  details.addEventListener("toggle", () => {
    if (details.open) unfolded.add(row.id);
    else unfolded.delete(row.id);
  });
  return [text, details];
}

// A command's last lines usually say why it failed: the box opens scrolled to its end.
function causeStderr(text) {
  const pre = h("pre", { class: "stderr", tabindex: "0" }, text);
  requestAnimationFrame(() => { pre.scrollTop = pre.scrollHeight; });
  return pre;
}

function timeline(stepRows, status) {
  const final = FINAL_STATUSES.includes(status);
  let currentMarked = false;
  return h("ol", { class: "timeline" }, STEPS.map((step) => {
    const row = stepRows.find((r) => step.statuses.includes(r.status));
    let state;
    if (row) state = step.statuses === FINAL_STATUSES ? `done result-${row.status}` : "done";
    else if (!final && !currentMarked) {
      state = "current";
      currentMarked = true;
    } else state = final ? "skipped" : "todo";
    const stateText = row ? (step.statuses === FINAL_STATUSES ? statusLabel(row.status) : "done")
      : state === "current" ? "in progress" : state === "skipped" ? "skipped" : "not yet";
    return h("li", { class: `step ${state}`, "aria-current": state === "current" ? "step" : null,
      dataset: { step: step.label } },
      h("span", { class: "marker", "aria-hidden": "true" }),
      h("div", { class: "step-body" },
        h("p", { class: "step-title" }, step.label,
          h("span", { class: "step-state" }, ` — ${stateText}`)),
        row ? h("p", { class: "step-message" }, row.message, " · ", time(row.created_at)) : null));
  }));
}

function progress(events, unfolded) {
  const groups = [];
  let stats = null;
  for (const row of events) {
    const ev = row.details;
    if (ev.event === EVENT.PLAYBOOK_ON_PLAY_START) groups.push({ play: ev.task || "play" });
    else if (ev.event === EVENT.PLAYBOOK_ON_TASK_START) groups.push({ task: ev.task || "", hosts: new Map(), row });
    else if (ev.event in OUTCOMES) {
      let group = [...groups].reverse().find((g) => g.hosts && g.task === (ev.task || ""));
      if (!group) {
        group = { task: ev.task || "", hosts: new Map(), row };
        groups.push(group);
      }
      group.hosts.set(ev.host || "?", row);
    } else if (ev.event === EVENT.PLAYBOOK_ON_STATS) stats = ev.data?.stats || null;
  }
  const rows = [];
  for (const group of groups) {
    if (group.play) {
      rows.push(h("tr", { class: "play-row" }, h("th", { colspan: "4", scope: "rowgroup" }, `Play: ${group.play}`)));
      continue;
    }
    if (!group.hosts.size) {
      rows.push(h("tr", { dataset: { task: group.task } }, cell("Task", group.task), cell("Host", "—"),
        cell("Result", h("span", { class: "outcome outcome-started" }, "started")), cell("Message", "")));
      continue;
    }
    for (const [host, row] of group.hosts) {
      const ev = row.details;
      let outcome = OUTCOMES[ev.event];
      if (outcome === "ok" && ev.data?.changed) outcome = "changed";
      rows.push(h("tr", { dataset: { task: group.task, host } },
        cell("Task", group.task), cell("Host", host),
        cell("Result", h("span", { class: `outcome outcome-${outcome}` }, outcome)),
        cell("Message", resultMessage(row, unfolded))));
    }
  }
  return { rows, stats };
}

function hostStats(stats) {
  const hosts = Object.entries(stats || {}).filter(([, s]) => s && typeof s === "object");
  if (!hosts.length) return null;
  return table(["Host", ...HOST_STATS_KEYS], hosts.map(([host, s]) =>
    h("tr", {}, cell("Host", host), HOST_STATS_KEYS.map((key) => cell(key, String(s[key] ?? 0))))),
  { caption: "Per-host totals" });
}

export async function deploymentPage(ctx) {
  const id = ctx.params.id;
  let detail = await api.get(`/api/deployments/${id}`, { signal: ctx.signal });
  ctx.setTitle(detail.deployment_name);
  const rows = new Map(); // history id -> row
  const unfoldedStderr = new Set(); // history ids
  let status = detail.status;
  let historyLoaded = false;

  const statusHolder = h("span", { class: "status-holder" }, badge(status));
  const liveState = h("span", { class: "live", role: "status" }, "Connecting…");
  const links = h("p", { class: "links" });
  const reasonBox = h("div", { class: "notice notice-error failure", role: "alert", hidden: true });
  const facts = h("div", {});
  const timelineBox = h("div", {}, h("p", { class: "hint" }, "Loading history…"));
  const progressBox = h("div", {});
  const disksBox = h("div", {});
  const configBox = h("div", {});
  const historyBox = h("div", {});

  function renderDetail() {
    setChildren(facts, definitionList([
      ["Template", link(`/templates/${detail.template_id}`, `${detail.template_name} v${detail.template_version}`)],
      ["Service type", detail.service_type],
      ["Owner", detail.username],
      ["Created", time(detail.created_at)],
      ["Updated", time(detail.updated_at)],
      ["Workflow", h("code", {}, detail.workflow_id)],
    ]));
    setChildren(disksBox, detail.disk_allocations.length ? disksTable(detail.disk_allocations)
      : h("p", { class: "hint" }, "Disks are allocated in the second step."));
    setChildren(configBox, configurationTable(detail.configuration));
  }

  function renderHistory() {
    const sorted = [...rows.values()].sort((a, b) => a.id - b.id);
    const stepRows = sorted.filter((r) => !isEvent(r));
    const events = sorted.filter(isEvent).sort((a, b) => a.details.counter - b.details.counter);

    if (historyLoaded) setChildren(timelineBox, timeline(stepRows, status));

    const triggered = stepRows.find((r) => r.status === STATUS.QUEUED);
    const jobId = triggered?.details?.job_id || detail.jenkins_job_id;
    setChildren(links,
      externalLink(detail.temporal_url, "Workflow in Temporal UI"),
      jobId ? [" · Pipeline job ", triggered?.details?.url
        ? externalLink(triggered.details.url, jobId) : h("code", {}, jobId)] : null);

    const result = stepRows.find((r) => FINAL_STATUSES.includes(r.status));
    if (result && result.status !== STATUS.SUCCEEDED) {
      const failing = events.filter((r) => FAILING_EVENTS.includes(r.details.event));
      // The failure that failed the run (as the API's reason names it): the first not ignored.
      const cause = failing.find((r) => !r.details.data?.ignore_errors)?.details;
      reasonBox.hidden = false;
      setChildren(reasonBox,
        h("h2", {}, result.status === STATUS.TIMED_OUT ? "Timed out" : `Deployment ${statusLabel(result.status)}`),
        h("p", { class: "reason" }, result.details?.reason || result.message),
        cause?.data?.stderr ? [h("p", { class: "stderr-label" }, `stderr of ${cause.task} on ${cause.host}:`),
          causeStderr(cause.data.stderr)] : null,
        failing.length > 1 ? h("ul", {}, failing.map((r) => h("li", {},
          `${OUTCOMES[r.details.event]} on ${r.details.host}: ${r.details.task}`,
          r.details.data?.msg ? ` — ${r.details.data.msg}` : ""))) : null);
    } else reasonBox.hidden = true;

    const { rows: progressRows, stats } = progress(events, unfoldedStderr);
    const totals = hostStats(stats || result?.details?.stats);
    setChildren(progressBox,
      progressRows.length
        ? table(["Task", "Host", "Result", "Message"], progressRows, { caption: "Tasks and hosts", className: "progress" })
        : h("p", { class: "hint" }, FINAL_STATUSES.includes(status)
          ? "No task events were reported." : "Task events appear here when the playbook runs."),
      totals ? [h("h3", {}, "Per-host totals"), totals] : null);

    setChildren(historyBox, sorted.length ? h("ol", { class: "history" }, sorted.map((r) =>
      h("li", {}, time(r.created_at), " ", badge(r.status), " ", r.message))) : h("p", { class: "hint" }, "No rows yet."));
  }

  let refreshTimer = null;
  function refreshDetail() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      try {
        detail = await api.get(`/api/deployments/${id}`, { signal: ctx.signal });
        renderDetail();
        renderHistory();
      } catch { /* the stream reports lasting trouble */ }
    }, 200);
  }

  let scheduled = false;
  function scheduleRender() {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      renderHistory();
    });
  }

  renderDetail();
  renderHistory();

  followEvents(`/api/deployments/${id}/events`, {
    after: 0,
    signal: ctx.signal,
    onEvent(event) {
      if (event.type === "history") {
        const row = JSON.parse(event.data);
        rows.set(row.id, row);
        scheduleRender();
      } else if (event.type === "status") {
        const data = JSON.parse(event.data);
        historyLoaded = true;
        if (data.status !== status) announce(`Status: ${statusLabel(data.status)}`);
        status = data.status;
        setChildren(statusHolder, badge(status));
        scheduleRender();
        refreshDetail();
      } else if (event.type === "end") {
        historyLoaded = true;
        scheduleRender();
      }
    },
    onState(state) {
      liveState.className = `live live-${state}`;
      liveState.textContent = { live: "Live", reconnecting: "Reconnecting…", ended: "Final: no more updates" }[state];
    },
    onError(error) {
      liveState.className = "live live-error";
      liveState.textContent = error.status === 404 ? "No longer visible to you" : `Live updates stopped: ${error.message}`;
    },
  });

  return h("section", { class: "deployment" },
    h("p", { class: "breadcrumb" }, link("/deployments", "Deployments"), " / ", detail.deployment_name),
    h("div", { class: "page-header" },
      h("h1", { tabindex: "-1" }, detail.deployment_name, " ", statusHolder),
      h("div", { class: "actions" }, liveState)),
    links,
    reasonBox,
    facts,
    h("h2", {}, "Steps"), timelineBox,
    h("h2", {}, "Progress"), progressBox,
    h("h2", {}, "Disks"), disksBox,
    h("h2", {}, "Configuration"), configBox,
    h("details", { class: "raw-history" }, h("summary", {}, "Full history"), historyBox));
}
