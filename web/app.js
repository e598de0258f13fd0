// Provisio's web UI: a small router over pages that render from the HTTP API. No build step.

import { api, ApiError, onUnauthorized, signOut, token } from "./api.js";
import { errorNotice, h, link, setChildren } from "./dom.js";
import { loginPage } from "./page-login.js";
import { deploymentsPage, newDeploymentPage } from "./page-deployments.js";
import { deploymentPage } from "./page-deployment.js";
import { templatePage, templatesPage } from "./page-templates.js";
import { adminTemplatesPage, usersPage } from "./page-admin.js";
import { accountPage } from "./page-account.js";
import { approvalsPage } from "./page-approvals.js";
import { auditPage } from "./page-audit.js";

const routes = [
  { pattern: "/login", page: loginPage, title: "Sign in", public: true },
  { pattern: "/deployments", page: deploymentsPage, title: "Deployments" },
  { pattern: "/deployments/new", page: newDeploymentPage, title: "New deployment" },
  { pattern: "/deployments/:id", page: deploymentPage, title: "Deployment" },
  { pattern: "/templates", page: templatesPage, title: "Templates" },
  { pattern: "/templates/:id", page: templatePage, title: "Template" },
  { pattern: "/account", page: accountPage, title: "Your account" },
  { pattern: "/admin/users", page: usersPage, title: "Users", admin: true },
  { pattern: "/admin/templates", page: adminTemplatesPage, title: "Manage templates", admin: true },
  { pattern: "/admin/approvals", page: approvalsPage, title: "Approvals", admin: true },
  { pattern: "/admin/audit", page: auditPage, title: "Audit", admin: true },
];

const session = { user: null };
let current = null; // {controller} of the page on screen
let firstRender = true;

function match(pathname) {
  for (const route of routes) {
    const names = [];
    const regex = new RegExp(`^${route.pattern.replace(/:(\w+)/g, (_, name) => {
      names.push(name);
      return "(\\d+)";
    })}/?$`);
    const found = pathname.match(regex);
    if (found) {
      return { route, params: Object.fromEntries(names.map((name, i) => [name, found[i + 1]])) };
    }
  }
  return null;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

function signInUrl() {
  const next = location.pathname + location.search;
  return next.startsWith("/login") ? "/login" : `/login?next=${encodeURIComponent(next)}`;
}

async function loadUser() {
  if (!token.get()) return null;
  try {
    return await api.get("/api/users/me");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

function renderNav() {
  const nav = document.getElementById("nav");
  const user = session.user;
  if (!user) {
    nav.replaceChildren();
    return;
  }
  const links = [["/deployments", "Deployments"], ["/templates", "Templates"]];
  if (user.role === "admin") {
    links.push(["/admin/approvals", "Approvals"], ["/admin/users", "Users"],
      ["/admin/templates", "Manage templates"], ["/admin/audit", "Audit"]);
  }
  setChildren(nav,
    h("ul", { class: "nav-links" }, links.map(([href, text]) => h("li", {}, link(href, text)))),
    h("div", { class: "nav-user" },
      link("/account", h("span", { class: "who" }, user.username, " ",
        h("span", { class: "role" }, user.role))),
      h("button", { type: "button", class: "secondary small", onclick: () => {
        signOut();
        session.user = null;
        navigate("/login");
      } }, "Sign out")),
  );
  markCurrentLink();
}

function markCurrentLink() {
  for (const anchor of document.querySelectorAll("#nav a")) {
    const here = location.pathname === anchor.pathname
      || (anchor.pathname !== "/" && location.pathname.startsWith(`${anchor.pathname}/`)
        && !(anchor.pathname === "/templates" && location.pathname.startsWith("/admin")));
    if (here) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
}

async function render() {
  current?.controller.abort();
  const controller = new AbortController();
  current = { controller };
  const main = document.getElementById("main");
  const found = match(location.pathname);

  if (!found) {
    setChildren(main, h("h1", { tabindex: "-1" }, "Page not found"),
      h("p", {}, "There is nothing at this address. ", link("/deployments", "Go to deployments"), "."));
    document.title = "Not found · Provisio";
    return;
  }
  const { route, params } = found;
  if (!route.public && !session.user) {
    try {
      session.user = await loadUser();
    } catch (error) {
      setChildren(main, errorNotice(error.message, () => render()));
      return;
    }
    if (controller.signal.aborted) return;
    if (!session.user) {
      navigate(signInUrl(), { replace: true });
      return;
    }
  }
  renderNav();
  if (route.admin && session.user?.role !== "admin") {
    setChildren(main, h("h1", { tabindex: "-1" }, "Admins only"),
      h("p", {}, "This page is for admins. Your role is ", h("strong", {}, session.user.role), "."));
    return;
  }

  document.title = `${route.title} · Provisio`;
  main.setAttribute("aria-busy", "true");
  const ctx = {
    params,
    query: new URLSearchParams(location.search),
    user: session.user,
    signal: controller.signal,
    navigate,
    setTitle: (title) => { document.title = `${title} · Provisio`; },
    setUser: (user) => { session.user = user; renderNav(); },
  };
  let view;
  try {
    view = await route.page(ctx);
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    view = failureView(error);
  }
  if (controller.signal.aborted) return;
  main.removeAttribute("aria-busy");
  setChildren(main, view);
  // Move focus to the new page's heading (for screen readers and keyboard users), except on the
  // first load, where the browser's own focus handling is what people expect.
  if (!firstRender) (main.querySelector("h1") || main).focus({ preventScroll: false });
  else main.querySelector("[autofocus]")?.focus();
  firstRender = false;
}

function failureView(error) {
  if (error instanceof ApiError && error.status === 404) {
    return h("div", {}, h("h1", { tabindex: "-1" }, "Not found"),
      h("p", {}, "It does not exist, or it is not yours to see. ",
        link("/deployments", "Back to deployments"), "."));
  }
  if (error instanceof ApiError && error.status === 403) {
    return h("div", {}, h("h1", { tabindex: "-1" }, "Not allowed"), h("p", {}, error.message));
  }
  return h("div", {}, h("h1", { tabindex: "-1" }, "Something went wrong"),
    errorNotice(error.message || String(error), () => render()));
}

onUnauthorized(() => {
  // The token expired or the user was disabled: forget it and ask to sign in again.
  if (!session.user) return;
  signOut();
  session.user = null;
  navigate(signInUrl(), { replace: true });
});

document.addEventListener("click", (event) => {
  const anchor = event.target.closest("a[data-link]");
  if (!anchor || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (anchor.origin !== location.origin) return;
  event.preventDefault();
  if (anchor.pathname + anchor.search !== location.pathname + location.search) {
    navigate(anchor.pathname + anchor.search);
  }
});
window.addEventListener("popstate", () => render());

render();
