// The messages, in seq order, each once: live ones, a welcome's history, gaps
// filled over HTTP, and older pages on request; edited and deleted in place.

import { limits, urls } from "./config.js";
import * as composer from "./composer.js";
import { state } from "./connection.js";
import {
  append,
  arrange,
  line,
  log,
  messageElement,
  showDeleted,
  showText,
} from "./log.js";
import { equip } from "./moderation.js";
import { removeTyper } from "./presence.js";
import { t } from "./strings.js";
import { arrived } from "./title.js";

const GAP_WAIT_MS = 300;
const GAP_RETRY_MS = 2000;

const loadOlderButton = document.getElementById("load-older");

let cursor = null; // every message up to this seq is shown (or was deleted)
let oldest = null; // seq of the oldest message shown, for "load older"
const early = new Map(); // seq -> message frame that came before its turn
let gapTimer = null;
let gapFetching = false;
// The author id of the page's own messages (the welcome's `you`), sent from
// here or from another tab: not news to the reader.
let ownAuthor = null;

// Whether a welcome has placed the page in the room's seqs: the page has been
// in the room before.
export function started() {
  return cursor !== null;
}

export function lastSeq() {
  return cursor;
}

// A message as shown, with the controls this page has over it.
function render(frame) {
  const element = messageElement(frame);
  equip(element);
  return element;
}

function shown(id) {
  return log.querySelector(`li.message[data-id="${Number(id)}"]`);
}

// `news`: said since the page came in (not its first page of history), so
// counted in the title of a hidden tab.
function showMessage(frame, { news = true } = {}) {
  const mine = composer.confirm(frame);
  append(render(frame), { follow: mine });
  if (oldest === null || frame.seq < oldest) oldest = frame.seq;
  removeTyper(frame.nickname);
  if (news && !mine && frame.author !== ownAuthor) arrived();
}

// A live one that comes before its turn waits for those before it; a gap that
// does not close by itself is fetched over HTTP. Before the first welcome there
// is no cursor to place it by (the protocol sends none then).
export function receive(frame) {
  if (cursor === null || frame.seq <= cursor) return;
  if (frame.seq === cursor + 1) {
    showMessage(frame);
    cursor = frame.seq;
    drainEarly();
    return;
  }
  early.set(frame.seq, frame);
  scheduleGapFill();
}

// A page read from the database (a welcome's history, a gap fill) is complete
// for the seqs from cursor to `through`: a seq missing from it was deleted.
function acceptRange(messages, through, { news = true } = {}) {
  for (const frame of messages) {
    if (frame.seq > cursor) {
      early.delete(frame.seq);
      showMessage(frame, { news });
      cursor = frame.seq;
    }
  }
  if (through > cursor) cursor = through;
  drainEarly();
}

function drainEarly() {
  while (early.has(cursor + 1)) {
    const next = early.get(cursor + 1);
    early.delete(cursor + 1);
    showMessage(next);
    cursor = next.seq;
  }
  for (const seq of early.keys()) if (seq <= cursor) early.delete(seq);
}

export function welcome(frame) {
  ownAuthor = frame.you?.author ?? null;
  const first = cursor === null;
  if (cursor !== null && frame.last_seq < cursor) {
    // The room was made anew under the same name: its seqs start over.
    cursor = frame.last_seq;
    early.clear();
  }
  if (cursor === null) {
    // The first page starts at its first message; older ones are a click away.
    const first = frame.history[0];
    cursor = first ? first.seq - 1 : frame.last_seq;
    loadOlderButton.hidden = !first || first.seq <= 1;
  }
  // The past (or what was missed while away) first, then the present.
  acceptRange(frame.history, frame.last_seq, { news: !first });
  // More was missed than one frame holds: the rest comes over HTTP.
  if (frame.has_more) scheduleGapFill(0);
}

// A pong's last_seq: a message past the cursor was missed.
export function behind(lastSeq) {
  if (lastSeq > cursor) scheduleGapFill();
}

// Deleted: each keeps its place, as "message deleted".
export function forget(ids) {
  for (const id of ids) {
    const el = shown(id);
    if (el) showDeleted(el);
  }
  for (const [seq, waiting] of early) {
    if (ids.includes(waiting.id)) early.set(seq, { ...waiting, text: "", deleted: true });
  }
}

// Edited: its new text in place (one not shown, older than the page's first,
// is read with its edit when it is loaded).
export function revise(frame) {
  const el = shown(frame.id);
  if (el && !el.classList.contains("deleted")) showText(el, frame);
  const waiting = early.get(frame.seq);
  if (waiting && waiting.id === frame.id) {
    early.set(frame.seq, { ...waiting, text: frame.text, edited: frame.edited });
  }
}

function scheduleGapFill(delay = GAP_WAIT_MS) {
  if (gapTimer === null) gapTimer = setTimeout(fillGap, delay);
}

async function fillGap() {
  gapTimer = null;
  // Away, the next welcome catches up instead.
  if (gapFetching || state() !== "joined") return;
  gapFetching = true;
  let failed = false;
  try {
    let more = true;
    while (more) {
      const limit = limits.history_page_max;
      const page = await fetchHistory({ after: cursor, limit });
      acceptRange(page.messages, page.through);
      more = page.has_more;
    }
  } catch (err) {
    console.warn("gap fill failed", err);
    failed = true;
  } finally {
    gapFetching = false;
  }
  if (early.size) scheduleGapFill(failed ? GAP_RETRY_MS : GAP_WAIT_MS);
}

async function fetchHistory(params) {
  const query = new URLSearchParams(params);
  const response = await fetch(`${urls.history}?${query}`, {
    headers: { Accept: "application/json" },
  });
  if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
  return response.json();
}

async function loadOlder() {
  loadOlderButton.disabled = true;
  const limit = limits.history_page;
  try {
    const page = await fetchHistory(
      oldest === null ? { limit } : { before: oldest, limit },
    );
    // Older lines go above the first message; the reader's view stays put.
    const first = log.querySelector("li.message");
    const fromBottom = log.scrollHeight - log.scrollTop;
    const older = page.messages.map(render);
    const batch = document.createDocumentFragment();
    batch.append(...older);
    log.insertBefore(batch, first);
    // Their days' lines and groups count in the height the view keeps.
    arrange(older);
    log.scrollTop = log.scrollHeight - fromBottom;
    if (page.messages.length) oldest = page.messages[0].seq;
    loadOlderButton.hidden = !page.has_more;
  } catch (err) {
    console.warn("load older failed", err);
    line(t("older_failed"), "error");
  } finally {
    loadOlderButton.disabled = false;
  }
}

loadOlderButton.addEventListener("click", loadOlder);

// An archived room: its newest page, and older ones on request; no socket.
export async function showArchived() {
  try {
    const page = await fetchHistory({ limit: limits.history_page });
    const messages = page.messages.map(messageElement);
    log.append(...messages);
    arrange(messages);
    if (page.messages.length) oldest = page.messages[0].seq;
    loadOlderButton.hidden = !page.has_more;
  } catch (err) {
    console.warn("history failed", err);
    line(t("older_failed"), "error");
  }
}
