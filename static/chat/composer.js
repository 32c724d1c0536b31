// Sending: the composer, messages waiting for the server's copy (pending),
// sending them again, and the typing signals.

import { errors, frames } from "./config.js";
import { send, state } from "./connection.js";
import { append, messageElement } from "./log.js";
import { myNickname } from "./presence.js";
import { t } from "./strings.js";

const TYPING_IDLE_MS = 400;
// A long burst of typing repeats its signal, so that a reader who joined
// meanwhile, or missed a stop, is right again soon.
const TYPING_REPEAT_MS = 3000;
// A message the server could not take just now (busy, away, rate-limited, or
// a socket that lost its room) goes again, each time a little later, until it
// is saved or refused for good: nothing typed is given up on by itself.
const RESEND_AFTER_MS = 2000;
const RESEND_MAX_MS = 30000;

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

// The server's copy of a message: one of ours replaces its pending line.
// Returns whether it was ours.
export function confirm(frame) {
  const mine = frame.client_id && pending.get(frame.client_id);
  if (!mine) return false;
  pending.delete(frame.client_id);
  mine.element.remove();
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
  // Refused for good: shown as not sent, with a way to send it again.
  pending.delete(frame.client_id);
  markFailed(refused, frame.client_id, frame.message);
  return false;
}

function markFailed(entry, clientId, reason) {
  clearTimeout(entry.timer);
  entry.element.classList.replace("pending", "failed");
  entry.element.title = reason;
  const again = document.createElement("button");
  again.type = "button";
  again.className = "resend";
  again.textContent = t("resend");
  again.addEventListener("click", () => {
    again.remove();
    entry.element.classList.replace("failed", "pending");
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
  append(element, { follow: true });
  pending.set(clientId, { text, element });
  // Away (or rejoining), it waits in `pending` and goes after the next welcome.
  if (joined()) sendMessage(text, clientId);
  input.value = "";
});
