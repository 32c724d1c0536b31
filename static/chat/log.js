// The room's log: how its lines and messages look, and where they go. Every
// user-typed string is rendered with textContent, never parsed as HTML.

import { t } from "./strings.js";

// Within this many pixels of the bottom, the log follows new lines.
const STICK_PX = 40;

export const log = document.getElementById("log");

// Nickname colours: a stable hash of the nickname picks the hue.
export function nicknameColor(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) | 0;
  return `hsl(${Math.abs(hash) % 360}, 65%, 38%)`;
}

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
}

// A reader scrolled up to older lines is left there; otherwise the log follows.
export function append(element, { follow = false } = {}) {
  const stick = follow || atBottom();
  log.append(element);
  if (stick) log.scrollTop = log.scrollHeight;
  return element;
}

export function line(text, kind = "") {
  const li = document.createElement("li");
  li.className = `note ${kind}`.trim();
  li.textContent = text;
  return append(li);
}

export function messageElement(frame) {
  const li = document.createElement("li");
  li.className = "message";
  if (frame.id != null) li.dataset.id = frame.id;
  if (frame.seq != null) li.dataset.seq = frame.seq;
  // Whose it is (moderation.js tells the page's own by it) and when it was sent.
  if (frame.author) li.dataset.author = frame.author;
  if (frame.ts) li.dataset.ts = frame.ts;
  const time = document.createElement("time");
  if (frame.ts) {
    const when = new Date(frame.ts);
    time.dateTime = frame.ts;
    time.title = when.toLocaleString();
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  const who = document.createElement("span");
  who.className = "nickname";
  who.textContent = frame.nickname;
  who.style.color = nicknameColor(frame.nickname);
  const body = document.createElement("span");
  body.className = "text";
  li.append(time, who, body);
  if (frame.deleted) showDeleted(li);
  else showText(li, frame);
  return li;
}

// A message's text, and whether (and when) its author edited it: in place.
export function showText(li, frame) {
  li.querySelector(".text").textContent = frame.text;
  let mark = li.querySelector(".edited");
  if (!frame.edited) {
    if (mark) mark.remove();
    return;
  }
  if (!mark) {
    mark = document.createElement("span");
    mark.className = "edited";
    mark.textContent = t("edited");
    li.querySelector(".text").after(mark);
  }
  mark.title = t("edited_at", { time: new Date(frame.edited).toLocaleString() });
}

// A deleted message keeps its place, its time and its author, and nothing of
// what it said: "message deleted" instead, and no controls.
export function showDeleted(li) {
  li.classList.add("deleted");
  li.classList.remove("editing");
  const body = li.querySelector(".text");
  body.textContent = t("message_deleted");
  // A reader whose focus was on one of its controls stays at its place.
  const focused = li.contains(document.activeElement);
  // What follows the text: the edited mark, controls, an editor.
  while (body.nextSibling) body.nextSibling.remove();
  if (focused) {
    li.tabIndex = -1;
    li.focus();
  }
}
