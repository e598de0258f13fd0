// Small DOM helpers. Text always goes in as text (textContent), never as HTML.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

// Like replaceChildren, but arrays are flattened and null/false/undefined skipped, as in h().
export function setChildren(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let uid = 0;
export const nextId = (prefix) => `${prefix}-${++uid}`;

// The statuses themselves come from the API: ./vocabulary.js (api/routes/ui.py).
export const statusLabel = (status) => status.replaceAll("_", " ");

export function badge(status) {
  return h("span", { class: `badge badge-${status}`, dataset: { status } }, statusLabel(status));
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
export function time(iso) {
  if (!iso) return h("span", {}, "—");
  return h("time", { datetime: iso, title: iso }, dateFormat.format(new Date(iso)));
}

// Only http(s) links: a value from the database never becomes a javascript: URL.
export function safeUrl(value) {
  try {
    const url = new URL(value, location.origin);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

export function externalLink(url, text) {
  const href = safeUrl(url);
  if (!href) return h("span", {}, text);
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, text,
    h("span", { class: "visually-hidden" }, " (opens in a new tab)"));
}

export function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

export function buttonLink(href, text, extraClass = "") {
  return h("a", { href, "data-link": true, class: `button ${extraClass}`.trim() }, text);
}

export function pageHeader(title, ...actions) {
  return h("div", { class: "page-header" },
    h("h1", { tabindex: "-1" }, title),
    actions.length ? h("div", { class: "actions" }, actions) : null);
}

export function emptyState(title, text, ...actions) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title),
    text ? h("p", {}, text) : null, actions.length ? h("p", {}, actions) : null);
}

export function errorNotice(message, retry) {
  return h("div", { class: "notice notice-error", role: "alert" }, h("p", {}, message),
    retry ? h("button", { type: "button", class: "secondary", onclick: retry }, "Try again") : null);
}

export function definitionList(pairs) {
  return h("dl", { class: "facts" },
    pairs.filter(Boolean).map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

export function table(headers, rows, { caption, className = "" } = {}) {
  return h("div", { class: "table-wrap" },
    h("table", { class: `responsive ${className}`.trim() },
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      h("tbody", {}, rows)));
}

// A table cell that shows its column name on narrow screens (see .responsive in app.css).
export function cell(label, ...children) {
  return h("td", { "data-label": label }, ...children);
}

export function announce(text) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = "";
  setTimeout(() => { announcer.textContent = text; }, 50);
}

// ---------------------------------------------------------------------------------------------
// Forms: labelled fields with an error slot each, and the API's 422 `loc` paths mapped to them.

export function field({ id, label, input, hint }) {
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  input.id = id;
  input.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  const error = h("p", { id: errorId, class: "field-error", hidden: true });
  const wrapper = h("div", { class: input.type === "checkbox" ? "field field-check" : "field" },
    input.type === "checkbox" ? [input, h("label", { for: id }, label)]
      : [h("label", { for: id }, label), input],
    hint ? h("p", { id: hintId, class: "hint" }, hint) : null,
    error);
  return { wrapper, input, error };
}

export class FormErrors {
  // `summary`: where errors without a field of their own go. `resolve(loc)` maps an error's
  // loc (e.g. ["body", "disk_allocations", 0, "size_gb"]) to a key registered with `add`.
  constructor(summary, resolve = (loc) => loc.filter((part) => part !== "body").join(".")) {
    this.summary = summary;
    this.resolve = resolve;
    this.fields = new Map();
  }

  add(key, { input, error }) {
    this.fields.set(key, { input, error });
  }

  clear() {
    for (const { input, error } of this.fields.values()) {
      error.hidden = true;
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
    this.summary.hidden = true;
    this.summary.replaceChildren();
  }

  // Field errors go next to their field (the longest registered prefix of the loc wins);
  // the rest, and plain messages, go to the summary. Focus moves to the first problem.
  show(errors, fallbackMessage) {
    this.clear();
    const loose = [];
    let first = null;
    for (const problem of errors) {
      const loc = Array.isArray(problem.loc) ? problem.loc : [];
      let target = null;
      let n = loc.length;
      for (; n > 0 && !target; n -= 1) target = this.fields.get(this.resolve(loc.slice(0, n)));
      if (!target) {
        const where = loc.filter((part) => part !== "body").join(".");
        loose.push(where ? `${where}: ${problem.msg}` : problem.msg || String(problem));
        continue;
      }
      // An error deeper than the field it lands on says where: "provisio.callback_timeout_s: …".
      const rest = loc.slice(n + 1).join(".");
      const text = rest ? `${rest}: ${problem.msg}` : problem.msg;
      target.error.hidden = false;
      target.error.textContent = target.error.textContent ? `${target.error.textContent} ${text}` : text;
      target.input.setAttribute("aria-invalid", "true");
      first = first || target.input;
    }
    if (fallbackMessage) loose.unshift(fallbackMessage);
    if (loose.length || first) {
      this.summary.hidden = false;
      this.summary.append(h("p", {}, first && !loose.length
        ? "Please correct the highlighted fields." : "The request was refused:"));
      if (loose.length) this.summary.append(h("ul", {}, loose.map((msg) => h("li", {}, msg))));
    }
    (first || this.summary).focus();
  }
}

export function errorSummary() {
  return h("div", { class: "notice notice-error", role: "alert", tabindex: "-1", hidden: true });
}

// ---------------------------------------------------------------------------------------------
// A modal confirmation in a native <dialog>: focus stays inside it, Escape closes it, and focus
// returns to the button that opened it (or wherever `onConfirm` says, when that button is gone).
// `expect`: a text the person must type to confirm (a deployment's name before a destroy).
// `onConfirm()` runs while the dialog shows it is busy; it may return the element to focus after.

export function confirmDialog({
  title, message, confirmLabel, busyLabel, cancelLabel = "Go back", danger = false, expect = null,
  signal, onConfirm,
}) {
  const titleId = nextId("dialog-title");
  const messageId = nextId("dialog-message");
  const opener = document.activeElement;
  const confirm = h("button", { type: "submit", class: danger ? "danger" : null }, confirmLabel);
  const back = h("button", { type: "button", class: "secondary" }, cancelLabel);
  const typed = expect === null ? null : field({
    id: nextId("dialog-confirm"),
    label: ["Type ", h("strong", {}, expect), " to confirm"],
    input: h("input", { autocomplete: "off", spellcheck: "false", autocapitalize: "none" }),
  });
  const form = h("form", { method: "dialog" },
    h("h2", { id: titleId }, title),
    h("p", { id: messageId }, message),
    typed?.wrapper,
    h("div", { class: "form-actions" }, confirm, back));
  const dialog = h("dialog", { class: "confirm", "aria-labelledby": titleId, "aria-describedby": messageId }, form);

  let busy = false;
  let focusAfter = null;
  back.addEventListener("click", () => dialog.close());
  dialog.addEventListener("cancel", (event) => { if (busy) event.preventDefault(); });
  dialog.addEventListener("close", () => {
    dialog.remove();
    const target = [focusAfter, opener].find((el) => el?.isConnected);
    target?.focus();
  });
  signal?.addEventListener("abort", () => dialog.close(), { once: true });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    if (typed && typed.input.value.trim() !== expect) {
      typed.error.hidden = false;
      typed.error.textContent = `Type ${expect} exactly as shown.`;
      typed.input.setAttribute("aria-invalid", "true");
      typed.input.focus();
      return;
    }
    busy = true;
    confirm.disabled = true;
    back.disabled = true;
    confirm.textContent = busyLabel || confirmLabel;
    try {
      focusAfter = await onConfirm();
    } finally {
      busy = false;
      dialog.close();
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  // The safe choice has focus, unless there is something to type first.
  (typed ? typed.input : back).focus();
  return dialog;
}
