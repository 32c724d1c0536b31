// The WebSocket transport: one socket, its pings, and its end.
//
// openSocket(events) opens it and returns { send, welcomed, close, discard };
// events.opened() says a join can go, events.frame(frame) brings
// each frame, events.ended({ opened, final }) says it is over (once).

import { close, frames, urls } from "./config.js";

const PING_INTERVAL_MS = 15000;
// A socket that answers no ping for this long is taken for dead (a laptop
// that slept, a network that changed) and replaced.
const PONG_TIMEOUT_MS = 10000;

export const available = typeof WebSocket === "function";

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${urls.socket}`;
}

export function openSocket(events) {
  const ws = new WebSocket(socketUrl());
  let opened = false;
  let ended = false;
  let pingTimer = null;
  let pongTimer = null;

  function stopPing() {
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    pingTimer = null;
    pongTimer = null;
  }

  function end(code) {
    if (ended) return;
    ended = true;
    stopPing();
    // The room is gone or archived, or a moderator took the participant out
    // (its error frame said so): no retry.
    events.ended({ opened, final: close.final.includes(code), code });
  }

  function send(frame) {
    if (ended || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  ws.addEventListener("open", () => {
    opened = true;
    events.opened();
  });
  ws.addEventListener("message", (event) => {
    // An abandoned socket that was not quite dead has nothing more to say.
    if (ended) return;
    // Any frame shows the socket is alive.
    clearTimeout(pongTimer);
    pongTimer = null;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    events.frame(frame);
  });
  ws.addEventListener("close", (event) => end(event.code));

  return {
    send,
    welcomed() {
      stopPing();
      pingTimer = setInterval(() => {
        if (send({ type: frames.PING }) && pongTimer === null) {
          // A dead socket may take long to report its close: give up on it
          // now (it has no close code to tell).
          pongTimer = setTimeout(() => {
            ws.close();
            end(null);
          }, PONG_TIMEOUT_MS);
        }
      }, PING_INTERVAL_MS);
    },
    // Given up on: closed, and its end told.
    close() {
      ws.close();
      end(null);
    },
    // Put away without a word: another transport took over.
    discard() {
      ended = true;
      stopPing();
      ws.close();
    },
  };
}
