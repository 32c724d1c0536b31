// The page of someone a moderator took out of the room: kicked, with a way
// back in (their own choice, never a reconnect by itself), or banned, with
// none.

import { t } from "./strings.js";

const panel = document.getElementById("removed");
const title = document.getElementById("removed-title");
const detail = document.getElementById("removed-detail");
const rejoin = document.getElementById("rejoin");

// `message`: the server's own words (how long, and why), when they came.
export function show({ banned, message = "" }) {
  title.textContent = t(banned ? "removed_banned" : "removed_kicked");
  detail.textContent = message;
  detail.hidden = !message;
  rejoin.hidden = banned;
  panel.hidden = false;
  if (!banned) rejoin.focus();
}

export function hide() {
  panel.hidden = true;
}

// `again()` is called when a kicked person chooses to join again.
export function onRejoin(again) {
  rejoin.addEventListener("click", () => {
    hide();
    again();
  });
}
