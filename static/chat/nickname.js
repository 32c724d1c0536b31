// The nickname prompt: what it accepts before asking the server, and showing it.

import { limits } from "./config.js";
import { t } from "./strings.js";

const prompt = document.getElementById("login");
const form = document.getElementById("login-form");
const field = document.getElementById("nickname");
const error = document.getElementById("login-error");

// The server's rules are more (chat/nicknames.py); these are the ones worth
// saying before a round trip.
function problem(value) {
  const name = value.trim();
  if (!name) return t("nickname_empty");
  if ([...name].length > limits.nickname_max_length) {
    return t("nickname_long", { max: limits.nickname_max_length });
  }
  if (/\p{C}/u.test(name)) return t("nickname_control");
  return null;
}

// The prompt is modal: the page behind it is inert until a nickname is
// chosen, and Escape does not dismiss it (there is nothing to go back to).
prompt.addEventListener("cancel", (event) => event.preventDefault());

export function ask(message = "") {
  if (!prompt.open) prompt.showModal();
  error.textContent = message;
  field.focus();
}

export function hide() {
  if (prompt.open) prompt.close();
}

export function say(message) {
  error.textContent = message;
}

// `chosen(name)` is called with an acceptable nickname; `busy()` says whether a
// join is on its way (the form then waits for its answer).
export function onChosen(chosen, busy) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (busy()) return;
    const refusal = problem(field.value);
    error.textContent = refusal ?? "";
    if (refusal) return;
    chosen(field.value.trim());
  });
}
