// The nickname prompt: what it accepts before asking the server, and showing
// it; the nickname remembered for each room, so that a reload or a return
// rejoins without the prompt.

import { limits, page } from "./config.js";
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

// In this browser's storage, one per room: the visitor is this browser too
// (its session cookie), so a nickname it held is one it may hold again.
const storageKey = `chat-nickname:${page.room}`;

export function remembered() {
  try {
    return localStorage.getItem(storageKey);
  } catch {
    return null; // storage refused (a private window, a policy): asked each time
  }
}

export function remember(name) {
  try {
    if (name === null) localStorage.removeItem(storageKey);
    else localStorage.setItem(storageKey, name);
  } catch {
    // Not kept: the prompt comes back next time.
  }
}

// `value` fills the field: the nickname the server just refused, to mend.
export function ask(message = "", value = null) {
  if (value !== null) field.value = value;
  if (!prompt.open) prompt.showModal();
  error.textContent = message;
  field.focus();
  field.select();
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
