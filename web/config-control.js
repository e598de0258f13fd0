// Changing a deployment's configuration on its page: a form from its template's overrides
// (the same fields as the launch form, filled with the values it has now) while the API says the
// deployment may change (`resizable`: it has succeeded), for those who may deploy. Only the
// values that differ are sent; a secret is never shown: its field starts empty and stays as it
// is unless something is typed. The API decides what the template allows, and its refusal is
// shown next to the field it names.

import { api, ApiError } from "./api.js";
import { field, FormErrors, h, setChildren } from "./dom.js";
import { configInput, editableConfiguration, readConfig } from "./page-deployments.js";
import { MASK, SECRET_KEY_PATTERN } from "./vocabulary.js";

const secretName = new RegExp(SECRET_KEY_PATTERN, "i");
const isSecret = ({ key, schema }) => schema.writeOnly === true || schema.format === "password"
  || secretName.test(key);

export function configControl({ id, signal, enabled, onChanged }) {
  const fields = h("div", { class: "grid" });
  const summary = h("div", { class: "notice notice-error", role: "alert", tabindex: "-1", hidden: true });
  const result = h("div", { class: "config-result" });
  const submit = h("button", { type: "submit", class: "secondary" }, "Apply");
  const form = h("form", { class: "config-edit", "aria-label": "Change configuration", novalidate: true },
    h("h3", {}, "Change the configuration"),
    h("p", { class: "hint" }, "The deployment is updating while its playbook runs again with the "
      + "new values; history shows each change, secrets masked."),
    summary, fields, h("div", { class: "form-actions" }, submit));
  const offer = h("div", { hidden: true }, form);
  const element = h("div", { class: "config-change" }, offer, result);
  const errors = new FormErrors(summary);
  let specs = []; // {key, type, schema, initial, secret, input}
  let template = null; // the template's configuration, read once
  let builtFrom = null; // the values the fields were filled with

  function build(configuration) {
    specs = [];
    errors.fields.clear();
    const { editable } = editableConfiguration(template);
    setChildren(fields, editable.map((spec) => {
      const secret = isSecret(spec);
      const current = { ...spec, initial: configuration[spec.key] };
      const input = secret
        ? h("input", { type: "password", name: spec.key, autocomplete: "new-password", placeholder: "unchanged" })
        : configInput(current);
      const hint = secret ? "a secret: leave empty to keep it"
        : current.initial === undefined ? "not set" : `now ${JSON.stringify(current.initial)}`;
      const f = field({ id: `change-config-${id}-${spec.key}`, label: spec.key, input, hint });
      errors.add(`configuration.${spec.key}`, f);
      specs.push({ ...current, secret, input });
      return f.wrapper;
    }));
    return editable.length > 0;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.clear();
    const configuration = {};
    const local = [];
    for (const spec of specs) {
      if (spec.secret) {
        if (spec.input.value !== "") configuration[spec.key] = spec.input.value;
        continue;
      }
      const { value, problem, skip } = readConfig(spec.input, spec);
      if (problem) local.push({ loc: ["configuration", spec.key], msg: problem });
      else if (!skip && JSON.stringify(value) !== JSON.stringify(spec.initial)) configuration[spec.key] = value;
    }
    if (local.length) return errors.show(local);
    if (!Object.keys(configuration).length) {
      return errors.show([], "Nothing to change: every value is the deployment's value now.");
    }
    submit.disabled = true;
    let notice;
    try {
      // One key per click: a resend after a lost answer changes once; the next click is new.
      const answer = await api.patch(`/api/deployments/${id}`, { configuration },
        { headers: { "Idempotency-Key": crypto.randomUUID() }, signal });
      onChanged(answer);
      const keys = Object.keys(configuration).sort().join(", ");
      notice = h("div", { class: "notice notice-ok", role: "status", tabindex: "-1" },
        h("p", {}, `Configuration change requested: ${keys}; the deployment is ${answer.status}.`));
    } catch (error) {
      if (signal.aborted || error.name === "AbortError") return;
      if (error instanceof ApiError && error.fieldErrors.length) return errors.show(error.fieldErrors);
      notice = h("div", { class: "notice notice-error", role: "alert", tabindex: "-1" },
        h("p", {}, h("strong", {}, "Could not change the configuration: "), String(error.message || error)));
    } finally {
      submit.disabled = false;
    }
    setChildren(result, notice);
    notice.focus();
  });

  // Shown while the deployment may change; the fields are filled again only when its values
  // change (a change applied), so what was typed stays across live updates.
  async function render(detail) {
    const show = Boolean(enabled && detail.resizable);
    if (show && template === null) {
      try {
        template = (await api.get(`/api/templates/${detail.template_id}`, { signal })).configuration || {};
      } catch (error) {
        if (signal.aborted || error.name === "AbortError") return;
        template = {};
      }
    }
    const values = JSON.stringify(detail.configuration);
    let editable = specs.length > 0;
    if (show && values !== builtFrom) {
      builtFrom = values;
      editable = build(detail.configuration);
    }
    offer.hidden = !(show && editable);
  }

  return { element, render };
}
