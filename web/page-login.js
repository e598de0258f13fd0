import { api, ApiError, signIn } from "./api.js";
import { errorSummary, field, FormErrors, h } from "./dom.js";

// Only a path on this site: `next` comes from the address bar.
function safeNext(value) {
  return value && value.startsWith("/") && !value.startsWith("//") && !value.startsWith("/login")
    ? value : "/deployments";
}

export async function loginPage(ctx) {
  const summary = errorSummary();
  const errors = new FormErrors(summary);
  const username = field({
    id: "username", label: "Username",
    input: h("input", { name: "username", autocomplete: "username", required: true, autofocus: true,
      autocapitalize: "none", spellcheck: "false" }),
  });
  const password = field({
    id: "password", label: "Password",
    input: h("input", { name: "password", type: "password", autocomplete: "current-password", required: true }),
  });
  errors.add("username", username);
  errors.add("password", password);
  const submit = h("button", { type: "submit" }, "Sign in");

  const form = h("form", { class: "card narrow", novalidate: true }, summary, username.wrapper,
    password.wrapper, h("div", { class: "form-actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.clear();
    const missing = [];
    if (!username.input.value.trim()) missing.push({ loc: ["username"], msg: "Enter your username." });
    if (!password.input.value) missing.push({ loc: ["password"], msg: "Enter your password." });
    if (missing.length) {
      errors.show(missing);
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      await signIn(username.input.value.trim(), password.input.value);
      ctx.setUser(await api.get("/api/users/me"));
      ctx.navigate(safeNext(ctx.query.get("next")), { replace: true });
    } catch (error) {
      const message = error instanceof ApiError && error.status === 401
        ? "Incorrect username or password." : error.message;
      errors.show([], message);
      password.input.select();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });

  return h("section", { class: "login" },
    h("h1", { tabindex: "-1" }, "Sign in to Provisio"),
    ctx.query.has("next") ? h("p", { class: "hint" }, "Please sign in to continue.") : null,
    form);
}
