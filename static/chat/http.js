// The HTTP transport, for where WebSockets cannot go (docs/protocol.md, "The
// HTTP transport"): frames are POSTed, and the room's frames come on an event
// stream (EventSource), or by long-polling where a proxy holds the stream back.
//
// openHttp(events, { lastSeq, mode }) returns the same object as openSocket
// (socket.js); events.mode(mode) says when it turns from "stream" to "poll".
// A welcome that a stream or poll starts with (it resumes from the page's
// last seq) comes with { quiet: true }: the page is in the room already.

import { errors, fallback, frames, page, urls } from "./config.js";
import { t } from "./strings.js";
import { share } from "./tabs.js";

// A POST with no answer by then is taken as lost (a message goes again, under
// its client_id, so it is saved once); the POSTs after it wait meanwhile.
const POST_TIMEOUT_MS = 10000;
const POLL_RETRY_MS = 1000;
// The instances' cursors a poll carries, and the frames' keys remembered.
const CURSORS_KEPT = 4;
const TOLD_KEPT = 1000;
const POLL_RETRY_MAX_MS = 10000;

async function post(url, frame) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    signal: AbortSignal.timeout(POST_TIMEOUT_MS),
    headers: { "Content-Type": "application/json", "X-CSRFToken": page.csrfToken },
    body: JSON.stringify(frame),
  });
  // typing, stop_typing and leave have nothing to say back.
  return response.status === 204 ? null : response.json();
}

export function openHttp(events, { lastSeq, mode = "stream" }) {
  let ticket = null;
  let answered = false;
  let ended = false;
  let source = null;
  let polling = null;
  let streamTimer = null;
  let tabs = null;
  // The POSTs of frames, chained.
  let sending = Promise.resolve();
  // Settles the Web Lock (tabs.js) of a stream this tab leads.
  let streamOver = () => {};

  function end(final = false) {
    if (ended) return;
    stop();
    events.ended({ opened: answered, final });
  }

  function stop() {
    ended = true;
    clearTimeout(streamTimer);
    if (source) source.close();
    if (polling) polling.abort();
    streamOver();
    if (tabs) tabs.stop();
  }

  function deliver(frame, options = {}) {
    if (ended) return;
    events.frame(frame, options);
    if (tabs) tabs.pass(frame, options);
  }

  function ticketQuery(extra = {}) {
    const cursor = lastSeq();
    return new URLSearchParams({
      ticket,
      ...(cursor === null ? {} : { last_seq: String(cursor) }),
      ...extra,
    });
  }

  // The stream: EventSource resumes it by itself with Last-Event-ID (the
  // room's seq). One that brings no welcome soon is held back by something on
  // the way: long-polling takes over.
  function stream() {
    return new Promise((settle) => {
      streamOver = settle;
      source = new EventSource(`${urls.http_events}?${ticketQuery()}`);
      let welcomed = false;
      streamTimer = setTimeout(() => {
        if (welcomed || ended) return;
        source.close();
        mode = "poll";
        events.mode(mode);
        poll().then(settle);
      }, fallback.stream_timeout_ms);
      source.addEventListener("message", (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (frame.type === frames.WELCOME) welcomed = true;
        deliver(frame, { quiet: frame.type === frames.WELCOME });
      });
      source.addEventListener("error", () => {
        // Refused (an HTTP error: the ticket is no longer good, the room is
        // archived...): the page joins again, and the join's answer says why.
        // Otherwise EventSource is reconnecting by itself.
        if (source.readyState === EventSource.CLOSED) end();
      });
    });
  }

  // Polls may go round several instances, each holding its own copy of the
  // participant: each instance's cursor is kept (by its epoch, the part
  // before the dot), and a frame that two of them bring is told once.
  const cursors = new Map();
  const told = new Set();

  function tellOnce(key) {
    if (key === null) return true;
    if (told.has(key)) return false;
    told.add(key);
    if (told.size > TOLD_KEPT) told.delete(told.values().next().value);
    return true;
  }

  async function poll() {
    let retry = POLL_RETRY_MS;
    while (!ended) {
      polling = new AbortController();
      let response;
      try {
        const cursor = [...cursors.values()].join(",");
        response = await fetch(`${urls.http_poll}?${ticketQuery({ cursor })}`, {
          credentials: "same-origin",
          cache: "no-store",
          signal: polling.signal,
        });
      } catch {
        if (ended) return;
        // Unreachable for now: the participant waits out the grace meanwhile.
        await new Promise((wake) => setTimeout(wake, retry));
        retry = Math.min(retry * 2, POLL_RETRY_MAX_MS);
        continue;
      }
      retry = POLL_RETRY_MS;
      if (!response.ok) {
        end();
        return;
      }
      let body;
      try {
        body = await response.json();
      } catch {
        continue;
      }
      const [epoch] = body.cursor.split(".");
      cursors.delete(epoch);
      cursors.set(epoch, body.cursor);
      if (cursors.size > CURSORS_KEPT) cursors.delete(cursors.keys().next().value);
      body.frames.forEach((frame, i) => {
        if (tellOnce(body.keys[i])) {
          deliver(frame, { quiet: frame.type === frames.WELCOME });
        }
      });
    }
  }

  function receive() {
    tabs = share(page.room, {
      lead: () => (mode === "stream" ? stream() : poll()),
      relayed: (frame, options) => {
        if (!ended) events.frame(frame, options);
      },
    });
  }

  function postJoin(frame) {
    post(urls.http_join, frame)
      .then((answer) => {
        answered = true;
        if (ended) return;
        if (answer.type === frames.WELCOME) {
          ({ ticket } = answer);
          events.frame(answer);
          receive();
          return;
        }
        events.frame(answer);
        if (errors.final.includes(answer.code)) end(true);
      })
      .catch(() => end());
  }

  function send(frame) {
    if (ended) return false;
    if (frame.type === frames.JOIN) {
      postJoin(frame);
      return true;
    }
    if (ticket === null) return false;
    // One at a time, in the order sent, as on a socket: two POSTs at once may
    // reach two instances and be saved the other way round.
    const url = `${urls.http_send}?${new URLSearchParams({ ticket })}`;
    sending = sending.then(() =>
      post(url, frame)
        .then((answer) => {
          if (answer && !ended) events.frame(answer);
        })
        .catch(() => {
          // The server was not reached: a message goes again by itself.
          if (frame.type === frames.MESSAGE && !ended) {
            const refusal = { type: frames.ERROR, code: errors.codes.UNAVAILABLE };
            refusal.message = t("send_failed");
            refusal.client_id = frame.client_id;
            events.frame(refusal);
          }
        }),
    );
    return true;
  }

  // Nothing to open: a join can go at once.
  queueMicrotask(() => {
    if (!ended) events.opened();
  });

  return {
    send,
    welcomed() {},
    close() {
      end();
    },
    // Put away without a word: the WebSocket took over. Its participant
    // leaves; the room hears nothing, as the socket holds the nickname.
    discard() {
      const leaving = ticket;
      stop();
      if (leaving !== null) {
        post(`${urls.http_send}?${new URLSearchParams({ ticket: leaving })}`, {
          type: frames.LEAVE,
        }).catch(() => {});
      }
    },
  };
}
