// One deployment: the seed's "fetch with details", a step timeline (its current attempt, then a
// cancel or destroy), per-task/per-host progress and the failure reason, and the operations the API
// allows now, each behind a confirmation. Kept live by GET /api/deployments/{id}/events.

import { api, ApiError, followEvents } from "./api.js";
import {
  announce, badge, cell, confirmDialog, definitionList, externalLink, h, link, statusLabel, table,
  time, setChildren
} from "./dom.js";
import { approvalControl } from "./approval-control.js";
import { configControl } from "./config-control.js";
import { leaseControl } from "./lease-control.js";
import { resizeControl } from "./resize-control.js";
import { canDeploy, configurationTable, disksTable } from "./page-templates.js";
import {
  EVENT, FAILING_EVENTS, FINAL_STATUSES, HISTORY_STATUS, HOST_STATS_KEYS, MASK, OPERATION,
  OPERATION_STARTS_AS, RESULT_OUTCOMES as OUTCOMES, STATUS, TERMINAL_STATUSES
} from "./vocabulary.js";

// A settled deployment's stream has ended, but an operation may still start elsewhere (another
// tab, the CLI, the end of a failed deployment's retention): the page asks again this often.
const SETTLED_RECHECK_MS = 5000;

// The runs after a deploy, by the status they run in: a cancel's or a destroy's teardown, or a
// change's deploy run (a resize, a reconfiguration); how each is worded. And the statuses a deployment can end its deploy with.
const LATER_RUNS = {
  [STATUS.CANCELLING]: { verb: "Cancel", triggered: "Teardown triggered", end: "Torn down",
    heading: "Teardown", job: "Teardown job" },
  [STATUS.DESTROYING]: { verb: "Destroy", triggered: "Teardown triggered", end: "Torn down",
    heading: "Teardown", job: "Teardown job" },
  [STATUS.UPDATING]: { verb: "Change", triggered: "Pipeline triggered", end: "Changed",
    heading: "Change", job: "Change job" },
};
const TEARDOWN_STATUSES = Object.keys(LATER_RUNS);
const FAILED_STATUSES = [STATUS.FAILED, STATUS.TIMED_OUT, STATUS.REJECTED];

// How each operation is worded. Which ones a deployment allows now is the API's answer
// (`allowed_operations`): the page offers exactly those and decides nothing itself.
const ACTIONS = {
  [OPERATION.CANCEL]: {
    button: "Cancel deployment",
    verb: "Cancel",
    message: () => "This stops its pipeline run and removes everything it has built so far. "
      + "It cannot be undone.",
    danger: true,
  },
  [OPERATION.DESTROY]: {
    button: "Destroy",
    verb: "Destroy",
    message: () => "This removes its disks and everything on them. It cannot be undone.",
    danger: true,
    typeName: true,
  },
  [OPERATION.RETRY]: {
    button: "Retry",
    verb: "Retry",
    message: (detail) => `This runs its pipeline again, as attempt ${detail.attempt + 1}. `
      + "Tasks that already completed change nothing.",
  },
};
const capitalize = (text) => text.charAt(0).toUpperCase() + text.slice(1);
const actionOf = (operation) => ACTIONS[operation]
  || { button: capitalize(operation), verb: capitalize(operation), message: () => "" };

// History rows stored from the callback plugin carry the Ansible event; the workflow's steps do not.
const isEvent = (row) => typeof row.details?.event === "string" && "counter" in row.details;
const attemptOf = (row) => row.attempt || 1;

// The step rows of the current attempt, split into its deploy and, once one started, its latest
// later run: a cancel or destroy (ending cancelled, destroyed, or failed when the teardown
// failed), or a change (ending succeeded, or failed).
function phases(stepRows) {
  const attempt = Math.max(1, ...stepRows.map(attemptOf));
  const deploy = [];
  let teardown = null;
  for (const row of stepRows) {
    if (attemptOf(row) !== attempt) continue;
    if (TEARDOWN_STATUSES.includes(row.status)) {
      if (!teardown || teardown.end) teardown = { status: row.status, rows: [row], end: null };
      else teardown.rows.push(row);
    } else if (teardown && !teardown.end) {
      if (FINAL_STATUSES.includes(row.status)) teardown.end = row;
      else teardown.rows.push(row);
    } else deploy.push(row);
  }
  return { attempt, deploy, teardown };
}

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

// One phase's steps: [{label, row, result}] in order; `over` when no step of it is still to come.
function stepItems(steps, over) {
  let currentMarked = false;
  return steps.map(({ label, row, result }) => {
    let state;
    if (row) state = result ? `done result-${row.status}` : "done";
    else if (!over && !currentMarked) {
      state = "current";
      currentMarked = true;
    } else state = over ? "skipped" : "todo";
    const stateText = row ? (result ? statusLabel(row.status) : "done")
      : state === "current" ? "in progress" : state === "skipped" ? "skipped" : "not yet";
    return h("li", { class: `step ${state}`, "aria-current": state === "current" ? "step" : null,
      dataset: { step: label } },
      h("span", { class: "marker", "aria-hidden": "true" }),
      h("div", { class: "step-body" },
        h("p", { class: "step-title" }, label, h("span", { class: "step-state" }, ` — ${stateText}`)),
        row ? h("p", { class: "step-message" }, row.message, " · ", time(row.created_at)) : null));
  });
}

function timeline({ attempt, deploy, teardown }, status) {
  const first = (statuses) => deploy.find((r) => statuses.includes(r.status));
  const deploySteps = [
    attempt > 1
      ? { label: "Retry requested", row: first([STATUS.PROVISIONING]) }
      : { label: "Created", row: first([HISTORY_STATUS.CREATED]) },
    attempt > 1 ? null : { label: "Disks allocated", row: first([STATUS.PROVISIONING]) },
    { label: "Pipeline triggered", row: first([STATUS.QUEUED]) },
    { label: "Running", row: first([STATUS.RUNNING]) },
    { label: "Result", row: first(FINAL_STATUSES), result: true },
  ].filter(Boolean);
  const deployOver = Boolean(teardown) || FINAL_STATUSES.includes(status);
  const items = stepItems(deploySteps, deployOver);
  if (teardown) {
    const words = LATER_RUNS[teardown.status];
    items.push(...stepItems([
      { label: `${words.verb} requested`, row: teardown.rows[0] },
      { label: words.triggered,
        row: teardown.rows.find((r, i) => i > 0 && r.status === teardown.status) },
      { label: words.end, row: teardown.end, result: true },
    ], Boolean(teardown.end)));
  }
  return h("ol", { class: "timeline" }, items);
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

function progressView(events, unfolded, { caption, emptyText }) {
  const { rows, stats } = progress(events, unfolded);
  const totals = hostStats(stats);
  return [
    rows.length ? table(["Task", "Host", "Result", "Message"], rows, { caption, className: "progress" })
      : h("p", { class: "hint" }, emptyText),
    totals ? [h("h3", {}, "Per-host totals"), totals] : null,
  ];
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
  const attemptHolder = h("span", { class: "attempt-holder" });
  const heading = h("h1", { tabindex: "-1" }, detail.deployment_name, " ", statusHolder, " ", attemptHolder);
  const liveState = h("span", { class: "live", role: "status" }, "Connecting…");
  const actionsBox = h("div", { class: "operations", role: "group", "aria-label": "Actions", hidden: true });
  const operationResult = h("div", { class: "operation-result" });
  const links = h("p", { class: "links" });
  const reasonBox = h("div", { class: "notice notice-error failure", role: "alert", hidden: true });
  const facts = h("div", {});
  const stepsHeading = h("h2", {}, "Steps");
  const timelineBox = h("div", {}, h("p", { class: "hint" }, "Loading history…"));
  const progressBox = h("div", {});
  const teardownProgressBox = h("div", {});
  const disksBox = h("div", {});
  const configBox = h("div", {});
  const historyBox = h("div", {});
  const lease = leaseControl({
    id, signal: ctx.signal, enabled: canDeploy(ctx.user), onExtended: (answer) => applyDetail(answer),
  });

  const resize = resizeControl({
    id, signal: ctx.signal, enabled: canDeploy(ctx.user),
    onResized: (answer) => { applyDetail(answer); follower.wake(); },
  });
  const approval = approvalControl({
    user: ctx.user, signal: ctx.signal,
    onDecided: (answer) => { applyDetail(answer); follower.wake(); },
  });
  const configChange = configControl({
    id, signal: ctx.signal, enabled: canDeploy(ctx.user),
    onChanged: (answer) => { applyDetail(answer); follower.wake(); },
  });

  function renderDetail() {
    setChildren(facts, definitionList([
      ["Template", link(`/templates/${detail.template_id}`, `${detail.template_name} v${detail.template_version}`)],
      ["Service type", detail.service_type],
      ["Owner", detail.username],
      ["Created", time(detail.created_at)],
      ["Updated", time(detail.updated_at)],
      ["Attempt", String(detail.attempt)],
      detail.retained_until ? ["Kept until", time(detail.retained_until)] : null,
      detail.expires_at ? ["Expires", time(detail.expires_at)] : null,
      detail.approval ? ["Approval", [detail.approval.state,
        detail.approval.by ? ` by ${detail.approval.by}` : "",
        detail.approval.comment ? `: ${detail.approval.comment}` : ""]] : null,
      ["Workflow", h("code", {}, detail.workflow_id)],
    ]));
    setChildren(attemptHolder, detail.attempt > 1
      ? h("span", { class: "attempt" }, `attempt ${detail.attempt}`) : null);
    setChildren(disksBox, detail.disk_allocations.length
      ? disksTable(detail.disk_allocations, { state: true })
      : h("p", { class: "hint" }, "Disks are allocated in the second step."));
    // The API shows a deployment's secrets masked: said plainly, not as a quoted string.
    setChildren(configBox, configurationTable(detail.configuration,
      { secret: (key) => detail.configuration[key] === MASK }));
    lease.render(detail);
    resize.render(detail);
    configChange.render(detail);
    approval.render(detail);
    renderActions();
  }

  // The operations the API says the deployment allows now. Viewers may start none, so they see
  // none; the buttons are rebuilt only when the list changes, so focus stays where it is.
  function renderActions() {
    const operations = canDeploy(ctx.user) ? detail.allowed_operations : [];
    const key = operations.join(" ");
    if (actionsBox.dataset.operations === key) return;
    actionsBox.dataset.operations = key;
    actionsBox.hidden = !operations.length;
    setChildren(actionsBox, operations.map((operation) => {
      const action = actionOf(operation);
      return h("button", { type: "button", class: action.danger ? "danger" : "secondary",
        dataset: { operation }, onclick: () => ask(operation) }, action.button);
    }));
  }

  function ask(operation) {
    const action = actionOf(operation);
    const name = detail.deployment_name;
    // One key per click: a second submit of this dialog, or a resend after a lost answer, is the
    // same operation; the next click is a new one.
    const idempotencyKey = crypto.randomUUID();
    confirmDialog({
      title: `${action.verb} ${name}?`,
      message: action.message(detail),
      confirmLabel: `${action.verb} ${name}`,
      busyLabel: `${capitalize(statusLabel(OPERATION_STARTS_AS[operation] || operation))}…`,
      cancelLabel: "Go back",
      danger: action.danger,
      expect: action.typeName ? name : null,
      signal: ctx.signal,
      onConfirm: () => start(operation, idempotencyKey),
    });
  }

  // Sends the operation; returns the notice that says how it went (focus goes there).
  async function start(operation, idempotencyKey) {
    const action = actionOf(operation);
    let notice;
    try {
      const answer = await api.post(`/api/deployments/${id}/${operation}`, undefined, {
        headers: { "Idempotency-Key": idempotencyKey }, signal: ctx.signal,
      });
      applyDetail(answer);
      follower.wake(); // a settled deployment's stream had ended: pick the operation up now
      notice = h("div", { class: "notice notice-ok", role: "status", tabindex: "-1" },
        h("p", {}, `${action.verb} requested: ${detail.deployment_name} is ${statusLabel(answer.status)}.`));
    } catch (error) {
      if (ctx.signal.aborted || error.name === "AbortError") return null;
      const reason = error instanceof ApiError ? error.message : String(error);
      notice = h("div", { class: "notice notice-error", role: "alert", tabindex: "-1" },
        h("p", {}, h("strong", {}, `Could not ${operation} ${detail.deployment_name}: `), reason));
      refreshDetail(); // whatever refused it changed the state: the actions follow
      follower.wake();
    }
    setChildren(operationResult, notice);
    // "Cancel requested: … is cancelling" holds until the status moves on; a refusal stays.
    operationResult.dataset.reported = notice.getAttribute("role") === "status" ? detail.status : "";
    return notice;
  }

  // A detail from an operation's answer or a re-read; an older one never replaces a newer one.
  function applyDetail(next) {
    if (new Date(next.updated_at) < new Date(detail.updated_at)) return;
    detail = next;
    if (detail.status !== status) setStatus(detail.status);
    renderDetail();
    renderHistory();
  }

  function setStatus(next) {
    if (next !== status) announce(`Status: ${statusLabel(next)}`);
    status = next;
    const reported = operationResult.dataset.reported;
    if (reported && reported !== status) {
      const hadFocus = operationResult.contains(document.activeElement);
      operationResult.dataset.reported = "";
      setChildren(operationResult);
      if (hadFocus) heading.focus();
    }
    setChildren(statusHolder, badge(status));
    showLiveState();
  }

  let live = "connecting";
  function showLiveState() {
    liveState.className = `live live-${live}`;
    if (live === "ended") {
      liveState.textContent = TERMINAL_STATUSES.includes(status)
        ? "Final: no more updates" : "Settled: watching for changes";
    } else if (live !== "error") {
      liveState.textContent = {
        live: "Live", reconnecting: "Reconnecting…", connecting: "Connecting…",
        limited: "Paused: too many live pages open (close another tab); retrying…",
      }[live];
    }
  }

  function renderHistory() {
    const sorted = [...rows.values()].sort((a, b) => a.id - b.id);
    const stepRows = sorted.filter((r) => !isEvent(r));
    const phase = phases(stepRows);
    const { attempt, deploy, teardown } = phase;
    const teardownStart = teardown ? teardown.rows[0].id : Infinity;
    const byCounter = (a, b) => a.details.counter - b.details.counter || a.id - b.id;
    const events = sorted.filter(isEvent);
    const deployEvents = events.filter((r) => attemptOf(r) === attempt && r.id < teardownStart).sort(byCounter);
    const teardownEvents = events.filter((r) => r.id > teardownStart).sort(byCounter);

    stepsHeading.textContent = attempt > 1 ? `Steps — attempt ${attempt}` : "Steps";
    if (historyLoaded) setChildren(timelineBox, timeline(phase, status));

    const triggered = deploy.find((r) => r.status === STATUS.QUEUED);
    const teardownRun = teardown?.rows.find((r) => r.details?.job_id);
    const jobLink = (row) => (row.details.url ? externalLink(row.details.url, row.details.job_id)
      : h("code", {}, row.details.job_id));
    const jobId = triggered?.details?.job_id || (teardown ? null : detail.jenkins_job_id);
    setChildren(links,
      externalLink(detail.temporal_url, "Workflow in Temporal UI"),
      jobId ? [" · Pipeline job ", triggered?.details?.job_id ? jobLink(triggered) : h("code", {}, jobId)] : null,
      teardownRun ? [` · ${LATER_RUNS[teardown.status].job} `, jobLink(teardownRun)] : null);

    // Why it failed: the row that set the status, and the run it came from.
    const fromTeardown = teardown?.end && teardown.end.status === status;
    const failedRow = FAILED_STATUSES.includes(status)
      ? (fromTeardown ? teardown.end : [...deploy].reverse().find((r) => r.status === status)) : null;
    if (failedRow) {
      const failing = (fromTeardown ? teardownEvents : deployEvents)
        .filter((r) => FAILING_EVENTS.includes(r.details.event));
      // The failure that failed the run (as the API's reason names it): the first not ignored.
      const cause = failing.find((r) => !r.details.data?.ignore_errors)?.details;
      const title = fromTeardown
        ? `${LATER_RUNS[teardown.status].verb} failed`
        : status === STATUS.TIMED_OUT ? "Timed out" : `Deployment ${statusLabel(status)}`;
      reasonBox.hidden = false;
      setChildren(reasonBox,
        h("h2", {}, title),
        h("p", { class: "reason" }, failedRow.details?.reason || failedRow.message),
        cause?.data?.stderr ? [h("p", { class: "stderr-label" }, `stderr of ${cause.task} on ${cause.host}:`),
          causeStderr(cause.data.stderr)] : null,
        failing.length > 1 ? h("ul", {}, failing.map((r) => h("li", {},
          `${OUTCOMES[r.details.event]} on ${r.details.host}: ${r.details.task}`,
          r.details.data?.msg ? ` — ${r.details.data.msg}` : ""))) : null,
        detail.retained_until && detail.status === status ? h("p", { class: "retention" },
          "What it built is kept until ", time(detail.retained_until),
          " so that you can inspect or retry it; then it is torn down on its own.") : null);
    } else reasonBox.hidden = true;

    const result = deploy.find((r) => FINAL_STATUSES.includes(r.status));
    const deployView = progressView(deployEvents, unfoldedStderr, {
      caption: "Tasks and hosts",
      emptyText: result || teardown ? "No task events were reported." : "Task events appear here when the playbook runs.",
    });
    if (!deployView[1] && result?.details?.stats) {
      const totals = hostStats(result.details.stats);
      if (totals) deployView[1] = [h("h3", {}, "Per-host totals"), totals];
    }
    setChildren(progressBox, deployView);
    const later = teardown ? LATER_RUNS[teardown.status].heading : null;
    setChildren(teardownProgressBox, teardown ? [h("h2", {}, later),
      progressView(teardownEvents, unfoldedStderr, {
        caption: `${later} tasks and hosts`,
        emptyText: teardown.end ? `No ${later.toLowerCase()} task events were reported.`
          : `${later} task events appear here when its playbook runs.`,
      })] : null);

    setChildren(historyBox, sorted.length ? h("ol", { class: "history" }, sorted.map((r) =>
      h("li", { dataset: { attempt: String(attemptOf(r)) } }, time(r.created_at), " ", badge(r.status), " ", r.message,
        attemptOf(r) > 1 ? h("span", { class: "attempt" }, `attempt ${attemptOf(r)}`) : null)))
      : h("p", { class: "hint" }, "No rows yet."));
  }

  let refreshTimer = null;
  function refreshDetail() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      try {
        applyDetail(await api.get(`/api/deployments/${id}`, { signal: ctx.signal }));
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

  const follower = followEvents(`/api/deployments/${id}/events`, {
    after: 0,
    signal: ctx.signal,
    recheckMs: () => (TERMINAL_STATUSES.includes(status) ? null : SETTLED_RECHECK_MS),
    onEvent(event) {
      if (event.type === "history") {
        const row = JSON.parse(event.data);
        rows.set(row.id, row);
        scheduleRender();
      } else if (event.type === "status") {
        const data = JSON.parse(event.data);
        historyLoaded = true;
        setStatus(data.status);
        scheduleRender();
        refreshDetail();
      } else if (event.type === "end") {
        historyLoaded = true;
        scheduleRender();
      }
    },
    onState(state) {
      live = state;
      showLiveState();
    },
    onError(error) {
      live = "error";
      liveState.className = "live live-error";
      liveState.textContent = error.status === 404 ? "No longer visible to you" : `Live updates stopped: ${error.message}`;
    },
  });

  return h("section", { class: "deployment" },
    h("p", { class: "breadcrumb" }, link("/deployments", "Deployments"), " / ", detail.deployment_name),
    h("div", { class: "page-header" },
      heading,
      h("div", { class: "actions" }, liveState, actionsBox)),
    operationResult,
    links,
    reasonBox,
    facts,
    approval.element,
    lease.element,
    stepsHeading, timelineBox,
    h("h2", {}, "Progress"), progressBox,
    teardownProgressBox,
    h("h2", {}, "Disks"), disksBox, resize.element,
    h("h2", {}, "Configuration"), configBox, configChange.element,
    h("details", { class: "raw-history" }, h("summary", {}, "Full history"), historyBox));
}
