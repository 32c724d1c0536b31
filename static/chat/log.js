// The room's log: how its lines and messages look, and where they go. Every
// user-typed string is rendered with textContent, never parsed as HTML.

import { locale, t } from "./strings.js";

// Within this many pixels of the bottom, the log follows new lines.
const STICK_PX = 40;

export const log = document.getElementById("log");

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
    time.title = when.toLocaleString(locale);
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
