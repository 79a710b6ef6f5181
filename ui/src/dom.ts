// A tiny element builder: no framework, no virtual DOM; views build their DOM once and
// update the few nodes that change.

export type Child = Node | string | number | null | undefined | false | Child[];

type Handler = (event: any) => void;
export interface Attrs {
  [name: string]: string | number | boolean | Handler | null | undefined;
}

function append(parent: Node, child: Child): void {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const item of child) append(parent, item);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(element: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value as Handler);
    } else if (name === "class") {
      element.setAttribute("class", String(value));
    } else if (name === "text") {
      element.textContent = String(value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
}

/** An HTML element: `h("a", { href: "/", class: "x" }, "text", child)`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  setAttrs(element, attrs);
  append(element, children);
  return element;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element, attributes set verbatim. */
export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG_NS, tag);
  setAttrs(element, attrs);
  append(element, children);
  return element;
}

export function clear(element: Element): void {
  while (element.firstChild) element.removeChild(element.firstChild);
}

/** A message in place of content: an empty result, a failure, a loading state. */
export function message(kind: "info" | "error" | "loading", title: string, detail?: Child): HTMLElement {
  return h(
    "div",
    { class: `message message-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("div", { class: "message-title" }, title),
    detail ? h("div", { class: "message-detail" }, detail) : null,
  );
}
