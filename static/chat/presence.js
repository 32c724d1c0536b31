// Who is here: the page's own nickname, the online list and its count, the
// participants line, and who is typing.

import { paintNickname } from "./log.js";
import { t, tn } from "./strings.js";

// Just over a typist's repeat (composer.js) and the server's coalescing delay
// of up to 250 ms: a typing shown after its stop was lost clears within 4 s.
const TYPING_EXPIRE_MS = 4000;
// The typing line's fade (style.css): its last words stay while it fades out.
const TYPING_FADE_MS = 200;

const typingLine = document.getElementById("typing");

let me = null;
let users = [];
const typers = new Map(); // nickname -> timer that forgets them
let fadeTimer = null;

export function myNickname() {
  return me;
}

export function setMyNickname(name) {
  me = name;
}

export function participantsText(n) {
  return tn("participants", n);
}

export function setUsers(next) {
  users = [...new Set(next)].sort((a, b) =>
    a.localeCompare(b, undefined, { sensitivity: "base" }),
  );
  document.getElementById("users").replaceChildren(
    ...users.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      paintNickname(li, name);
      li.dir = "auto";
      return li;
    }),
  );
  document.getElementById("count").textContent = String(users.length);
}

// Out of the room for good (archived, kicked, banned): no one is shown
// online, as on an archived room's page.
export function clear() {
  clearTypers();
  setUsers([]);
  document.getElementById("users").closest(".people").hidden = true;
}

export function addUser(name) {
  setUsers([...users, name]);
}

export function removeUser(name) {
  setUsers(users.filter((other) => other !== name));
}

// One line, short enough for a phone: one name, two, or "several people".
function renderTypers() {
  const names = [...typers.keys()];
  clearTimeout(fadeTimer);
  typingLine.classList.toggle("shown", names.length !== 0);
  if (names.length === 0) {
    fadeTimer = setTimeout(() => {
      typingLine.textContent = "";
    }, TYPING_FADE_MS);
  } else if (names.length === 1) typingLine.textContent = t("typing", { name: names[0] });
  else if (names.length === 2) {
    typingLine.textContent = t("typing_two", { first: names[0], second: names[1] });
  } else typingLine.textContent = t("typing_many");
}

export function addTyper(name) {
  if (name === me) return;
  clearTimeout(typers.get(name));
  typers.set(name, setTimeout(() => removeTyper(name), TYPING_EXPIRE_MS));
  renderTypers();
}

export function removeTyper(name) {
  if (!typers.has(name)) return;
  clearTimeout(typers.get(name));
  typers.delete(name);
  renderTypers();
}

export function clearTypers() {
  for (const timer of typers.values()) clearTimeout(timer);
  typers.clear();
  renderTypers();
}
