// Failures shown as messages: what went wrong, and for a refused token, a way to give one.

import { ApiError, saveAccess, savedOrg, savedToken } from "./api";
import { h, message } from "./dom";

/** A message for `error`; `retry` runs again what failed (after a token was entered). */
export function errorMessage(error: unknown, retry?: () => void): HTMLElement {
  if (error instanceof ApiError && error.needsToken) {
    const token = h("input", {
      type: "password",
      id: "access-token-inline",
      autocomplete: "off",
      value: savedToken(),
      placeholder: "query token",
    });
    const form = h(
      "form",
      { class: "inline-form" },
      h("label", { for: token.id }, "Token"),
      token,
      h("button", { type: "submit" }, "Use token"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      saveAccess(token.value.trim(), savedOrg());
      retry?.();
    });
    return message(
      "error",
      "The query API wants a token",
      h("div", null, h("p", null, error.message), form),
    );
  }
  const text = error instanceof Error ? error.message : String(error);
  return message(
    "error",
    "The query API failed",
    h(
      "div",
      null,
      h("p", null, text),
      retry ? h("button", { type: "button", onclick: () => retry() }, "Try again") : null,
    ),
  );
}
