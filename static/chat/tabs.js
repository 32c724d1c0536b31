// Tabs of one room on the HTTP transport share one stream.
//
// A browser opens at most 6 HTTP/1.1 connections to a host, and each tab on
// the HTTP transport holds one open (its stream or its poll): a seventh tab
// would wait forever. So one tab of the room holds the stream — the one with
// the room's Web Lock — and passes every frame on to the others over a
// BroadcastChannel; when it goes, the next tab in line takes the lock and
// opens its own. The others still send their own POSTs. Where a browser has
// neither, every tab has its own stream.

const shared = "locks" in navigator && typeof BroadcastChannel === "function";

// share(room, { lead, relayed }): lead() is called when this tab is to hold
// the stream, and returns a promise that settles when the stream is over;
// relayed(frame, options) receives what the leading tab passes on. Returns
// { pass(frame, options), stop() }: pass() hands a frame of this tab's stream
// on to the others, stop() leaves the line (and the lead).
export function share(room, { lead, relayed }) {
  if (!shared) {
    lead();
    return { pass() {}, stop() {} };
  }
  const name = `chat-stream:${room}`;
  const channel = new BroadcastChannel(name);
  const quit = new AbortController();
  let leader = false;
  channel.addEventListener("message", (event) => {
    if (!leader) relayed(event.data.frame, event.data.options);
  });
  navigator.locks
    .request(name, { signal: quit.signal }, () => {
      leader = true;
      return lead();
    })
    .catch(() => {}); // the request was withdrawn (stop) before its turn
  return {
    pass(frame, options) {
      if (leader) channel.postMessage({ frame, options });
    },
    stop() {
      leader = false;
      quit.abort();
      channel.close();
    },
  };
}
