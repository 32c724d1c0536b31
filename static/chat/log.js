// The room's log: how its lines and messages look, and where they go. Every
// user-typed string is rendered with textContent, never parsed as HTML.

import { locale, t, tn } from "./strings.js";

// Within this many pixels of the bottom, the log follows new lines.
const STICK_PX = 40;
// A message this soon after its author's previous one, the same day, goes
// under it without the name again.
const GROUP_MS = 5 * 60 * 1000;

export const log = document.getElementById("log");
const newer = document.getElementById("newer");

// The full date and time of a message, shown when its time is pointed at.
const fullTime = new Intl.DateTimeFormat(locale, {
  dateStyle: "full",
  timeStyle: "short",
});
// A day's line beyond yesterday: the weekday and date, the year only when it
// is not this one.
const dayThisYear = new Intl.DateTimeFormat(locale, {
  weekday: "long",
  month: "long",
  day: "numeric",
});
const dayOtherYear = new Intl.DateTimeFormat(locale, {
  weekday: "long",
  month: "long",
  day: "numeric",
  year: "numeric",
});

// Nickname colours: a stable hash of the nickname picks the hue, and each
// theme the lightness that keeps it readable on its background (at least
// 4.5:1, WCAG AA for text; one lightness for every hue left 160 of 360 hues
// under it on white).
const SATURATION = 0.65;
const CONTRAST = 4.6;
const BACKGROUNDS = { light: [255, 255, 255], dark: [22, 24, 28] };

function channel(value) {
  const c = value / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

function luminance([r, g, b]) {
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
}

function rgb(hue, lightness) {
  const a = SATURATION * Math.min(lightness, 1 - lightness);
  const f = (n) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (lightness - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

function readable(hue, theme) {
  const background = luminance(BACKGROUNDS[theme]);
  // From the lightness a nickname looks best at towards the background's
  // opposite, until it reads well enough.
  const [start, step] = theme === "light" ? [0.45, -0.01] : [0.6, 0.01];
  for (let lightness = start; lightness > 0 && lightness < 1; lightness += step) {
    const own = luminance(rgb(hue, lightness));
    const ratio = (Math.max(own, background) + 0.05) / (Math.min(own, background) + 0.05);
    if (ratio >= CONTRAST) return `rgb(${rgb(hue, lightness).join(" ")})`;
  }
  return theme === "light" ? "black" : "white";
}

const painted = new Map();

// The element shows `name` in its colours, one per theme (style.css picks).
export function paintNickname(element, name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) | 0;
  const hue = Math.abs(hash) % 360;
  if (!painted.has(hue)) painted.set(hue, [readable(hue, "light"), readable(hue, "dark")]);
  const [light, dark] = painted.get(hue);
  element.classList.add("named");
  element.style.setProperty("--nick-light", light);
  element.style.setProperty("--nick-dark", dark);
}

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
}

// A reader scrolled up to older lines is left there, and told of a message
// that came meanwhile; otherwise the log follows.
export function append(element, { follow = false } = {}) {
  const stick = follow || atBottom();
  log.append(element);
  if (element.classList.contains("message")) settle(element);
  if (stick) log.scrollTop = log.scrollHeight;
  else if (element.classList.contains("message")) showNewer();
  return element;
}

// "3 new messages", while the reader is above them: a click takes them down,
// and it goes once they are there by themselves.
let unseen = 0;

function showNewer() {
  unseen += 1;
  newer.textContent = tn("new_messages", unseen);
  newer.hidden = false;
}

function caughtUp() {
  unseen = 0;
  newer.hidden = true;
}

log.addEventListener(
  "scroll",
  () => {
    if (unseen && atBottom()) caughtUp();
  },
  { passive: true },
);

newer.addEventListener("click", () => {
  log.scrollTop = log.scrollHeight;
  caughtUp();
  // The button goes; the keyboard goes on where the reader would write.
  const input = document.getElementById("message");
  if (input && !input.closest("[hidden]")) input.focus();
});

// A message taken out of the log (a pending one the server's copy replaces):
// the one after it may now follow the one before.
export function removeMessage(element) {
  const after = nextMessage(element);
  element.remove();
  if (after) settle(after);
}

// Messages put into the log other than at its end (older pages, an archived
// room's history), in order: their days and groups, and the message after them.
export function arrange(elements) {
  for (const element of elements) settle(element);
  const after = elements.length ? nextMessage(elements[elements.length - 1]) : null;
  if (after) settle(after);
}

function isMessage(element) {
  return element.classList.contains("message");
}

function previousMessage(element) {
  let other = element.previousElementSibling;
  while (other && !isMessage(other)) other = other.previousElementSibling;
  return other;
}

function nextMessage(element) {
  let other = element.nextElementSibling;
  while (other && !isMessage(other)) other = other.nextElementSibling;
  return other;
}

// When a message was sent: the server's time, or for one still pending the
// moment it was written.
const written = new WeakMap();

function sentAt(li) {
  return li.dataset.ts ? Date.parse(li.dataset.ts) : (written.get(li) ?? Date.now());
}

// The reader's own calendar day of a moment, as 2025-03-01.
function dayOf(ms) {
  const when = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}`;
}

function dayWords(day) {
  const now = new Date();
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (day === dayOf(now.getTime())) return t("day_today");
  if (day === dayOf(yesterday.getTime())) return t("day_yesterday");
  const [year, month, date] = day.split("-").map(Number);
  const noon = new Date(year, month - 1, date, 12);
  return (year === now.getFullYear() ? dayThisYear : dayOtherYear).format(noon);
}

function dayLine(day) {
  const li = document.createElement("li");
  li.className = "day";
  li.dataset.day = day;
  const time = document.createElement("time");
  time.dateTime = day;
  time.textContent = dayWords(day);
  li.append(time);
  return li;
}

function nickname(li) {
  return li.querySelector(".nickname").textContent;
}

// The same person under the same name: by the author id where both have one
// (a pending message has none yet), and always by the name shown.
function sameAuthor(a, b) {
  if (nickname(a) !== nickname(b)) return false;
  return !a.dataset.author || !b.dataset.author || a.dataset.author === b.dataset.author;
}

// A message's place among its neighbours: a day's line right before the first
// message of each day (any other between it and the message before is stale:
// older ones went in before it, or the message it stood for went), and
// grouped under the message before when that is its author's, a moment ago.
function settle(li) {
  const before = previousMessage(li);
  const day = dayOf(sentAt(li));
  const newDay = !before || dayOf(sentAt(before)) !== day;
  const last = li.previousElementSibling;
  const own = last?.classList.contains("day") && last.dataset.day === day;
  const kept = newDay && own ? last : null;
  for (let other = last; other && other !== before; ) {
    const next = other.previousElementSibling;
    if (other.classList.contains("day") && other !== kept) other.remove();
    other = next;
  }
  if (newDay && !kept) li.before(dayLine(day));
  const grouped =
    !newDay &&
    li.previousElementSibling === before &&
    sameAuthor(before, li) &&
    sentAt(li) - sentAt(before) <= GROUP_MS;
  li.classList.toggle("grouped", grouped);
}

// "Today" is yesterday after midnight: the days' lines say so then.
function relabelDays() {
  for (const li of log.querySelectorAll("li.day")) {
    li.querySelector("time").textContent = dayWords(li.dataset.day);
  }
  const now = new Date();
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
  setTimeout(relabelDays, midnight - now + 1000);
}

relabelDays();

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
  else written.set(li, Date.now());
  const time = document.createElement("time");
  if (frame.ts) {
    const when = new Date(frame.ts);
    time.dateTime = frame.ts;
    time.title = fullTime.format(when);
    time.textContent = when.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  }
  const who = document.createElement("span");
  who.className = "nickname";
  who.textContent = frame.nickname;
  // Each as its own script's direction: an Arabic or Hebrew nickname or
  // message reads right to left, with its punctuation where it belongs.
  who.dir = "auto";
  paintNickname(who, frame.nickname);
  const body = document.createElement("span");
  body.className = "text";
  body.dir = "auto";
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
  mark.title = t("edited_at", { time: new Date(frame.edited).toLocaleString(locale) });
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
