// The room's log: how its lines and messages look, and where they go. Every
// user-typed string is rendered with textContent, never parsed as HTML.

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
  body.textContent = frame.text;
  li.append(time, who, body);
  return li;
}
