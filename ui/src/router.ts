// Client-side routing: every view's state lives in the URL (path and query string), so a
// reload or a shared link shows the same thing. The server answers index.html for each of
// these paths (crates/ui).

export interface View {
  /** Views with the same key are the same page: a new URL is handed to `update`. */
  key: string;
  element: HTMLElement;
  title: string;
  update?(url: URL): void;
  destroy?(): void;
}

type Listener = (url: URL) => void;
let listener: Listener = () => {};

export function onRoute(callback: Listener): void {
  listener = callback;
}

/** Goes to `href` (a path with its query) as a new history entry, or in place of this one. */
export function navigate(href: string, replace = false): void {
  const url = new URL(href, location.origin);
  if (url.href === location.href) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  listener(url);
}

/**
 * Writes a view's own state into the query string without redrawing the view: a selected
 * span, a collapsed subtree. `replace` keeps it out of the back button's way.
 */
export function setQuery(params: URLSearchParams, replace = true): void {
  const url = new URL(location.href);
  url.search = params.toString();
  if (url.href === location.href) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
}

export function currentParams(): URLSearchParams {
  return new URLSearchParams(location.search);
}

/** Follows in-app links without reloading; new tabs, downloads and modified clicks stay native. */
export function interceptLinks(root: HTMLElement): void {
  root.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = (event.target as Element).closest("a");
    if (!anchor) return;
    const href = anchor.getAttribute("href");
    if (!href || !href.startsWith("/") || href.startsWith("//") || href.startsWith("/api/")) return;
    if (anchor.getAttribute("target") || anchor.hasAttribute("download")) return;
    event.preventDefault();
    navigate(href);
  });
  window.addEventListener("popstate", () => listener(new URL(location.href)));
}
