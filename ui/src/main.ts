// The app shell: a header (navigation, the trace id box, access settings) and the view the
// URL names.

import "./style.css";
import { saveAccess, savedOrg, savedToken } from "./api";
import { h, message } from "./dom";
import { interceptLinks, navigate, onRoute, type View } from "./router";
import { mapView } from "./views/map";
import { searchView } from "./views/search";
import { traceLimit, traceView } from "./views/trace";

const TRACE_ID = /^[0-9a-f]{16}([0-9a-f]{16})?$/;

function traceIdBox(): HTMLElement {
  const input = h("input", {
    type: "search",
    id: "trace-id-input",
    name: "trace-id",
    placeholder: "Trace ID",
    autocomplete: "off",
    spellcheck: "false",
    "aria-label": "Open a trace by id",
    title: "Open a trace by its id (press / to focus)",
  });
  const hint = h("span", { class: "trace-id-hint", role: "status" });
  const form = h(
    "form",
    { class: "trace-id-form", role: "search" },
    input,
    h("button", { type: "submit" }, "Open"),
    hint,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = input.value.trim().toLowerCase().replace(/^0x/, "");
    if (!TRACE_ID.test(id)) {
      hint.textContent = "a trace id is 32 hexadecimal digits";
      input.setAttribute("aria-invalid", "true");
      return;
    }
    hint.textContent = "";
    input.removeAttribute("aria-invalid");
    input.value = "";
    input.blur();
    navigate(`/trace/${id}`);
  });
  input.addEventListener("input", () => {
    hint.textContent = "";
    input.removeAttribute("aria-invalid");
  });
  return form;
}

function accessSettings(): HTMLElement {
  const token = h("input", { type: "password", id: "access-token", autocomplete: "off", value: savedToken() });
  const org = h("input", { type: "text", id: "access-org", autocomplete: "off", value: savedOrg(), placeholder: "default" });
  const details = h("details", { class: "access" });
  const form = h(
    "form",
    { class: "access-form" },
    h("p", null, "Kept in this browser only, sent with every query."),
    h("label", { for: token.id }, "Query token"),
    token,
    h("label", { for: org.id }, "Tenant (X-Org-Id)"),
    org,
    h("button", { type: "submit" }, "Save and reload"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveAccess(token.value.trim(), org.value.trim());
    location.reload();
  });
  details.append(h("summary", { title: "Token and tenant" }, savedOrg() ? `Tenant: ${savedOrg()}` : "Access"), form);
  return details;
}

function header(): { element: HTMLElement; setActive(path: string): void } {
  const links = [
    h("a", { href: "/search", "data-nav": "search" }, "Search"),
    h("a", { href: "/map", "data-nav": "map" }, "Service map"),
  ];
  const element = h(
    "header",
    { class: "app-header" },
    h("a", { href: "/search", class: "brand", "aria-label": "spanflow home" }, h("span", { class: "brand-mark" }), "spanflow"),
    h("nav", { "aria-label": "Main" }, links),
    h("div", { class: "header-spacer" }),
    traceIdBox(),
    accessSettings(),
  );
  return {
    element,
    setActive(path) {
      for (const link of links) {
        const active = path.startsWith(`/${link.dataset.nav}`);
        if (active) link.setAttribute("aria-current", "page");
        else link.removeAttribute("aria-current");
      }
    },
  };
}

function notFound(url: URL): View {
  return {
    key: `404:${url.pathname}`,
    title: "Not found",
    element: h(
      "div",
      { class: "page" },
      message("info", "No such page", h("span", null, "Try the ", h("a", { href: "/search" }, "search page"), ".")),
    ),
  };
}

function viewFor(url: URL): { key: string; mount: () => View } {
  const path = url.pathname.replace(/\/+$/, "") || "/";
  const trace = /^\/trace\/([^/]+)$/.exec(path);
  if (trace) {
    const id = decodeURIComponent(trace[1]).toLowerCase();
    return { key: `trace:${id}:${traceLimit(url.searchParams)}`, mount: () => traceView(id, url) };
  }
  if (path === "/search") return { key: "search", mount: () => searchView(url) };
  if (path === "/map") return { key: "map", mount: () => mapView(url) };
  return { key: `404:${path}`, mount: () => notFound(url) };
}

function start(): void {
  const root = document.getElementById("app")!;
  root.textContent = "";
  const top = header();
  const main = h("main", { id: "main" });
  root.append(top.element, main);
  let current: View | null = null;

  const show = (url: URL) => {
    if (url.pathname === "/" || url.pathname === "") {
      navigate(`/search${url.search}`, true);
      return;
    }
    top.setActive(url.pathname);
    const next = viewFor(url);
    if (current && current.key === next.key && current.update) {
      current.update(url);
      document.title = `${current.title} · spanflow`;
      return;
    }
    current?.destroy?.();
    main.textContent = "";
    current = next.mount();
    main.append(current.element);
    document.title = `${current.title} · spanflow`;
    window.scrollTo(0, 0);
  };

  onRoute(show);
  interceptLinks(document.body);
  document.addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement;
    const typing = target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "/" && !typing && !event.metaKey && !event.ctrlKey) {
      event.preventDefault();
      document.getElementById("trace-id-input")?.focus();
    }
  });
  show(new URL(location.href));
}

start();
