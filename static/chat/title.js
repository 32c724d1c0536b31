// The tab's title, composed here alone: the room's name (as room.js last heard
// it), and while the tab is hidden how many messages from others came since,
// "(3) General"; seen again, it is the name alone.

import { locale } from "./strings.js";

const number = new Intl.NumberFormat(locale);

let name = document.title;
let unread = 0;

function compose() {
  document.title = unread ? `(${number.format(unread)}) ${name}` : name;
}

export function setName(next) {
  name = next;
  compose();
}

// A message from someone else: counted only while the reader cannot see it.
export function arrived() {
  if (document.visibilityState !== "hidden") return;
  unread += 1;
  compose();
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden" || !unread) return;
  unread = 0;
  compose();
});
