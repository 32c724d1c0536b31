// The connection to the room: which transport carries it, reconnecting with
// backoff, and the one state it is in.
//
//   idle        nothing opened yet (the first nickname is being asked for)
//   connecting  a transport is opening
//   connected   open, not in the room: no join sent yet, or the last one refused
//   joining     a join was sent and awaits its welcome (or error)
//   joined      welcomed: in the room
//   waiting     closed; a new transport is due after the backoff
//   closed      closed for good (the room is gone or archived, or a moderator
//               took the participant out of it)
//
// The WebSocket first (socket.js). A page whose socket cannot open, or dies
// before its welcome, twice in a row, turns to the HTTP transport (http.js),
// and from there tries a WebSocket again now and then in the background: one
// that is welcomed takes over without a word.

import { fallback, frames } from "./config.js";
import { openHttp } from "./http.js";
import { available as socketsAvailable, openSocket } from "./socket.js";

const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 5000;
// Failures before a welcome, in a row, that turn the page to HTTP.
const FAILURES_BEFORE_HTTP = 2;

let current = "idle";
// "websocket", or the HTTP transport's "stream" or "poll".
let kind = socketsAvailable ? "websocket" : "stream";
let transport = null;
// A WebSocket tried in the background while HTTP carries the chat.
let candidate = null;
let attempts = 0;
let failures = 0;
let reconnectTimer = null;
let probeTimer = null;
// The server said this is the end (finish()): the transport's end is final.
let finished = false;
let listeners = {
  open() {},
  frame() {},
  closed() {},
  transport() {},
  joinFrame: () => null,
  lastSeq: () => null,
};

export function state() {
  return current;
}

export function transportKind() {
  return kind;
}

// open(): a join can go; frame(frame, { quiet }): one frame from the server
// (quiet: a welcome that resumes, with nothing to tell the reader);
// closed({ opened, wasJoined, final, code }): the transport ended, before any
// reconnect (code: a WebSocket's close code, if it had one); transport(kind):
// what carries the chat now; joinFrame(): the join to send; lastSeq(): the
// page's cursor.
export function listen(callbacks) {
  listeners = { ...listeners, ...callbacks };
}

export function send(frame) {
  return transport !== null && transport.send(frame);
}

// A join that cannot go now (still connecting, or waiting to reconnect) goes
// when the next transport opens.
export function join(frame) {
  if (send(frame)) current = "joining";
}

export function welcomed() {
  current = "joined";
  attempts = 0;
  failures = 0;
  transport.welcomed();
  scheduleProbe();
}

// The transport stays open: the next nickname is tried on it.
export function joinRefused() {
  current = "connected";
}

// Out of the room at once (no grace: the room hears it), the transport kept
// open for the next join.
export function leave() {
  if (current === "joined" && send({ type: frames.LEAVE })) current = "connected";
}

// Given up on: closed, and tried again after the backoff.
export function drop() {
  transport.close();
}

// The server said the end is coming (errors.final: the room is gone, or a
// moderator took the participant out): closed now, and not reconnected,
// whatever the transport does next (an HTTP stream has no close code to say
// it). connect() starts over.
export function finish() {
  finished = true;
  if (transport !== null) transport.close();
}

// One transport's events, heard only while it is the page's (or the
// candidate's, until its welcome).
function launch(kindNow) {
  let self = null;
  const events = {
    opened() {
      if (self === transport) {
        current = "connected";
        listeners.open();
      } else if (self === candidate) {
        self.send(listeners.joinFrame());
      }
    },
    frame(frame, options = {}) {
      if (self === transport) listeners.frame(frame, options);
      else if (self === candidate) candidateFrame(frame);
    },
    ended(info) {
      if (self === transport) ended(info);
      else if (self === candidate) {
        candidate = null;
        scheduleProbe();
      }
    },
    mode(next) {
      if (self === transport) setKind(next);
    },
  };
  self =
    kindNow === "websocket"
      ? openSocket(events)
      : openHttp(events, { lastSeq: () => listeners.lastSeq(), mode: kindNow });
  return self;
}

export function connect() {
  reconnectTimer = null;
  finished = false;
  current = "connecting";
  transport = launch(kind);
}

function setKind(next) {
  kind = next;
  listeners.transport(kind);
}

function ended({ opened, final: closedForGood, code = null }) {
  const final = closedForGood || finished;
  const wasJoined = current === "joined";
  if (candidate !== null) {
    candidate.discard();
    candidate = null;
  }
  if (!wasJoined && kind === "websocket") {
    failures += 1;
    if (failures >= FAILURES_BEFORE_HTTP) {
      failures = 0;
      attempts = 0;
      setKind("stream");
    }
  }
  current = final ? "closed" : "waiting";
  listeners.closed({ opened, wasJoined, final, code });
  if (!final) scheduleReconnect();
}

// Reconnection forever: 1 s doubling to 5 s, each wait ±50 % at random so that
// a server restart is not met by every client at the same instant.
function scheduleReconnect() {
  if (current === "closed" || reconnectTimer !== null) return;
  const base = Math.min(BACKOFF_FIRST_MS * 2 ** attempts, BACKOFF_MAX_MS);
  attempts += 1;
  reconnectTimer = setTimeout(connect, base * (0.5 + Math.random()));
}

// Back online after a network change: try now rather than at the end of a wait.
window.addEventListener("online", () => {
  if (reconnectTimer === null) return;
  clearTimeout(reconnectTimer);
  connect();
});

// While HTTP carries the chat, a WebSocket is tried every so often (±50 %).
function scheduleProbe() {
  if (!socketsAvailable || kind === "websocket" || probeTimer !== null) return;
  const wait = fallback.websocket_retry_ms * (0.5 + Math.random());
  probeTimer = setTimeout(() => {
    probeTimer = null;
    if (current === "joined" && kind !== "websocket" && candidate === null) {
      candidate = launch("websocket");
    }
  }, wait);
}

// The background socket's answer to its join. Welcomed, it takes over: its
// welcome resumes from the page's cursor, so nothing is shown twice, and the
// HTTP participant leaves without the room hearing of it (the socket holds the
// nickname).
function candidateFrame(frame) {
  const next = candidate;
  if (frame.type !== frames.WELCOME || current !== "joined") {
    candidate = null;
    next.discard();
    scheduleProbe();
    return;
  }
  candidate = null;
  const previous = transport;
  transport = next;
  previous.discard();
  setKind("websocket");
  transport.welcomed();
  listeners.frame(frame, { quiet: true });
}
