// Sending: the composer, messages waiting for the server's copy (pending),
// sending them again, and the typing signals.

import { errors, frames } from "./config.js";
import { send, state } from "./connection.js";
import { append, messageElement, removeMessage } from "./log.js";
import { myNickname } from "./presence.js";
import { duration, t } from "./strings.js";

const TYPING_IDLE_MS = 400;
// A long burst of typing repeats its signal, so that a reader who joined
// meanwhile, or missed a stop, is right again soon.
const TYPING_REPEAT_MS = 3000;
// A message the server could not take just now (busy, away, rate-limited, or
// a socket that lost its room) goes again, each time a little later, until it
// is saved or refused for good: nothing typed is given up on by itself.
const RESEND_AFTER_MS = 2000;
const RESEND_MAX_MS = 30000;
// How often a message held back (muted, slow mode) says again how long is left.
const HELD_TICK_MS = 1000;
// The word for each refusal that lifts by itself (errors.held).
const HELD_WORDS = {
  [errors.codes.MUTED]: "held_muted",
  [errors.codes.SLOW_MODE]: "held_slow_mode",
};

const composer = document.getElementById("composer");
const input = document.getElementById("message");

const pending = new Map(); // client_id -> {text, element}
let typingTimer = null;
let typingSentAt = 0;

const joined = () => state() === "joined";

function sendMessage(text, clientId) {
  send({ type: frames.MESSAGE, text, client_id: clientId });
}

export function show({ focus = false } = {}) {
  composer.hidden = false;
  if (focus) input.focus();
}

export function hide() {
  composer.hidden = true;
}

export function onChangeNickname(change) {
  document.getElementById("change-nickname").addEventListener("click", change);
}

// The server's copy of a message: one of ours replaces its pending line.
// Returns whether it was ours.
export function confirm(frame) {
  const mine = frame.client_id && pending.get(frame.client_id);
  if (!mine) return false;
  pending.delete(frame.client_id);
  removeMessage(mine.element);
  return true;
}

// An error frame naming one of our messages. Returns true when nothing more is
// to be said of it: it goes again by itself.
export function refuse(frame) {
  const refused = frame.client_id && pending.get(frame.client_id);
  if (!refused) return false;
  if (errors.retry.includes(frame.code)) {
    // Not saved this time: it stays pending and goes again, with the same
    // client_id (saved at most once), each time a little later; a welcome
    // after a reconnect sends it at once.
    refused.tries = (refused.tries || 0) + 1;
    refused.element.title = frame.message;
    clearTimeout(refused.timer);
    refused.timer = setTimeout(
      () => {
        if (pending.has(frame.client_id) && joined()) {
          sendMessage(refused.text, frame.client_id);
        }
      },
      Math.min(RESEND_AFTER_MS * 2 ** (refused.tries - 1), RESEND_MAX_MS),
    );
    // Sending too fast is said in the log too.
    return frame.code !== errors.codes.RATE_LIMITED;
  }
  // Refused for good, or for a while (muted, slow mode): shown as not sent,
  // with a way to send it again. One held back is not sent again by itself:
  // until its time is up it would only be refused again; the reader is told
  // how long that is.
  pending.delete(frame.client_id);
  markFailed(refused, frame.client_id, frame.message);
  if (errors.held.includes(frame.code)) showHeld(refused, frame);
  return false;
}

// "muted — 9 min left" beside a message held back, counting down; gone once
// the time is up (retry_after absent: for good, no time to say).
function showHeld(entry, frame) {
  const label = document.createElement("span");
  label.className = "held";
  const reason = t(HELD_WORDS[frame.code] ?? "held_other");
  const until = frame.retry_after == null ? null : Date.now() + frame.retry_after * 1000;
  function tell() {
    if (until === null) {
      label.textContent = reason;
      return;
    }
    const left = (until - Date.now()) / 1000;
    if (left > 0) {
      label.textContent = t("time_left", { reason, left: duration(left) });
      return;
    }
    clearInterval(entry.heldTimer);
    label.remove();
  }
  tell();
  if (until !== null) entry.heldTimer = setInterval(tell, HELD_TICK_MS);
  entry.element.querySelector(".resend").before(label);
}

// What grey and strike-through show, said to screen readers too: the log is a
// live region, so the change is read out.
function tellState(element, words) {
  let state = element.querySelector(".state");
  if (!state) {
    state = document.createElement("span");
    state.className = "state visually-hidden";
    element.append(state);
  }
  state.textContent = words;
}

function markFailed(entry, clientId, reason) {
  clearTimeout(entry.timer);
  entry.element.classList.replace("pending", "failed");
  entry.element.title = reason;
  tellState(entry.element, t("state_failed", { reason }));
  const again = document.createElement("button");
  again.type = "button";
  again.className = "resend";
  again.textContent = t("resend");
  again.addEventListener("click", () => {
    again.remove();
    clearInterval(entry.heldTimer);
    entry.element.querySelector(".held")?.remove();
    entry.element.classList.replace("failed", "pending");
    tellState(entry.element, t("state_sending"));
    entry.tries = 0;
    pending.set(clientId, entry);
    if (joined()) sendMessage(entry.text, clientId);
  });
  entry.element.append(again);
}

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// The server saves a client_id once, so a message that did arrive before the
// socket dropped is not saved twice.
export function resendPending() {
  for (const [clientId, entry] of pending) sendMessage(entry.text, clientId);
}

export function stopTyping() {
  clearTimeout(typingTimer);
  typingTimer = null;
  if (typingSentAt) send({ type: frames.STOP_TYPING });
  typingSentAt = 0;
}

input.addEventListener("input", () => {
  if (!joined()) return;
  if (!input.value) {
    stopTyping();
    return;
  }
  if (Date.now() - typingSentAt > TYPING_REPEAT_MS && send({ type: frames.TYPING })) {
    typingSentAt = Date.now();
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
});

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  stopTyping();
  const clientId = newClientId();
  const element = messageElement({ nickname: myNickname(), text });
  element.classList.add("pending");
  tellState(element, t("state_sending"));
  append(element, { follow: true });
  pending.set(clientId, { text, element });
  // Away (or rejoining), it waits in `pending` and goes after the next welcome.
  if (joined()) sendMessage(text, clientId);
  input.value = "";
});
