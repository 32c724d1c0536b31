// The socket: connecting, reconnecting with backoff, pings, and the one state
// the connection is in.
//
//   idle        no socket yet (the first nickname is being asked for)
//   connecting  a socket is opening
//   connected   open, not in the room: no join sent yet, or the last one refused
//   joining     a join was sent and awaits its welcome (or error)
//   joined      welcomed: in the room
//   waiting     closed; a new socket is due after the backoff
//   closed      closed for good (the room is gone or archived)

import { close, frames, urls } from "./config.js";

const PING_INTERVAL_MS = 15000;
// A socket that answers no ping for this long is taken for dead (a laptop
// that slept, a network that changed) and replaced.
const PONG_TIMEOUT_MS = 10000;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 5000;

let current = "idle";
let socket = null;
let attempts = 0;
let reconnectTimer = null;
let pingTimer = null;
let pongTimer = null;
let abandonSocket = () => {};
let listeners = { open() {}, frame() {}, closed() {} };

export function state() {
  return current;
}

// open(): the socket opened; frame(frame): one frame from the server;
// closed({ opened, wasJoined, final }): the socket closed, before any reconnect.
export function listen(callbacks) {
  listeners = { ...listeners, ...callbacks };
}

export function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

// A join that cannot go now (still connecting, or waiting to reconnect) goes
// when the next socket opens.
export function join(frame) {
  if (send(frame)) current = "joining";
}

export function welcomed() {
  current = "joined";
  attempts = 0;
  startPing();
}

// The socket stays open: the next nickname is tried on it.
export function joinRefused() {
  current = "connected";
}

// Given up on: closed, and tried again after the backoff.
export function drop() {
  socket.close();
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${urls.socket}`;
}

export function connect() {
  reconnectTimer = null;
  current = "connecting";
  const ws = new WebSocket(socketUrl());
  socket = ws;
  let opened = false;
  let ended = false;
  const onClose = (code) => {
    if (ended) return;
    ended = true;
    socketClosed(code, opened);
  };
  ws.addEventListener("open", () => {
    opened = true;
    current = "connected";
    listeners.open();
  });
  ws.addEventListener("message", (event) => {
    // An abandoned socket that was not quite dead has nothing more to say.
    if (ws !== socket) return;
    // Any frame shows the socket is alive.
    clearTimeout(pongTimer);
    pongTimer = null;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    listeners.frame(frame);
  });
  ws.addEventListener("close", (event) => onClose(event.code));
  // A dead socket may take a long time to report its close: give up on it now
  // (it has no close code to tell).
  abandonSocket = () => {
    ws.close();
    onClose(null);
  };
}

function socketClosed(code, opened) {
  const wasJoined = current === "joined";
  stopPing();
  // The room is gone or archived (its error frame said so): no retry.
  const final = close.final.includes(code);
  current = final ? "closed" : "waiting";
  listeners.closed({ opened, wasJoined, final });
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

function startPing() {
  stopPing();
  pingTimer = setInterval(() => {
    if (send({ type: frames.PING }) && pongTimer === null) {
      pongTimer = setTimeout(abandonSocket, PONG_TIMEOUT_MS);
    }
  }, PING_INTERVAL_MS);
}

function stopPing() {
  clearInterval(pingTimer);
  clearTimeout(pongTimer);
  pingTimer = null;
  pongTimer = null;
}
