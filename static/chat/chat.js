// The room page's client. Follows docs/protocol.md; every user-typed string is
// rendered with textContent, never parsed as HTML.

const $ = (id) => document.getElementById(id);

const config = JSON.parse($("chat-config").textContent);
// The page's words, translated by the template (templates/chat/room.html).
const strings = Object.fromEntries(
  [...$("chat-strings").content.querySelectorAll("[data-key]")].map((el) => [
    el.dataset.key,
    el.textContent,
  ]),
);

const TYPING_IDLE_MS = 400;
// A message the server could not take just now (busy, away, rate-limited, or
// a socket that lost its room) goes again, each time a little later, until it
// is saved or refused for good: nothing typed is given up on by itself.
const RESEND_AFTER_MS = 2000;
const RESEND_MAX_MS = 30000;
const RETRY_ERRORS = ["unavailable", "rate_limited", "not_joined"];
// A long burst of typing repeats its signal, so that a reader who joined
// meanwhile, or missed a stop, is right again soon.
const TYPING_REPEAT_MS = 3000;
// Just over the repeat (and the server's coalescing delay of up to 250 ms): a
// typing shown after its stop was lost clears within 4 s.
const TYPING_EXPIRE_MS = 4000;
const PING_INTERVAL_MS = 15000;
// A socket that answers no ping for this long is taken for dead (a laptop
// that slept, a network that changed) and replaced.
const PONG_TIMEOUT_MS = 10000;
const GAP_WAIT_MS = 300;
const GAP_RETRY_MS = 2000;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 5000;
const FINAL_CLOSE_CODES = [4404, 4410];
const JOIN_ERRORS = ["invalid_nickname", "nickname_taken"];
// Sent just before a final close: said in the log, not in the nickname prompt.
const FINAL_ERRORS = ["room_not_found", "room_archived"];
const HISTORY_PAGE = 50;
const GAP_PAGE = 200;
// Within this many pixels of the bottom, the log follows new lines.
const STICK_PX = 40;

const log = $("log");
const composer = $("composer");
const input = $("message");
const typingLine = $("typing");
const loadOlderButton = $("load-older");

let nickname = null;
let socket = null;
let joined = false;
let joining = false;
let everJoined = false;
let closedForGood = false;
let attempts = 0;
let reconnectTimer = null;
let abandonSocket = () => {};
let cursor = null; // every message up to this seq is shown (or was deleted)
let oldest = null; // seq of the oldest message shown, for "load older"
const early = new Map(); // seq -> message frame that came before its turn
const pending = new Map(); // client_id -> {text, element}
const typers = new Map(); // nickname -> timer that forgets them
let users = [];
let gapTimer = null;
let gapFetching = false;
let pingTimer = null;
let pongTimer = null;
let typingTimer = null;
let typingSentAt = 0;

function t(key, values = {}) {
  return strings[key].replace(/\{(\w+)\}/g, (_match, name) => String(values[name]));
}

// Nickname colours: a stable hash of the nickname picks the hue.
function nicknameColor(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) | 0;
  return `hsl(${Math.abs(hash) % 360}, 65%, 38%)`;
}

// Output ---------------------------------------------------------------------

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
}

// A reader scrolled up to older lines is left there; otherwise the log follows.
function append(element, { follow = false } = {}) {
  const stick = follow || atBottom();
  log.append(element);
  if (stick) log.scrollTop = log.scrollHeight;
  return element;
}

function line(text, kind = "") {
  const li = document.createElement("li");
  li.className = `note ${kind}`.trim();
  li.textContent = text;
  return append(li);
}

function participantsText(n) {
  return n === 1 ? t("participants_one") : t("participants_many", { count: n });
}

function messageElement(frame) {
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

function showMessage(frame) {
  const mine = frame.client_id && pending.get(frame.client_id);
  if (mine) {
    pending.delete(frame.client_id);
    mine.element.remove();
  }
  append(messageElement(frame), { follow: Boolean(mine) });
  if (oldest === null || frame.seq < oldest) oldest = frame.seq;
  removeTyper(frame.nickname);
}

// Ordering --------------------------------------------------------------------

// Messages are shown in seq order, each once. A live one that comes before its
// turn waits for those before it; a gap that does not close by itself is
// fetched over HTTP.
function receiveMessage(frame) {
  if (frame.seq <= cursor) return;
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
function acceptRange(messages, through) {
  for (const frame of messages) {
    if (frame.seq > cursor) {
      early.delete(frame.seq);
      showMessage(frame);
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

function scheduleGapFill(delay = GAP_WAIT_MS) {
  if (gapTimer === null) gapTimer = setTimeout(fillGap, delay);
}

async function fillGap() {
  gapTimer = null;
  // Away, the next welcome catches up instead.
  if (gapFetching || !joined) return;
  gapFetching = true;
  let failed = false;
  try {
    let more = true;
    while (more) {
      const page = await fetchHistory({ after: cursor, limit: GAP_PAGE });
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
  const response = await fetch(
    `/rooms/${encodeURIComponent(config.room)}/messages?${query}`,
    { headers: { Accept: "application/json" } },
  );
  if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
  return response.json();
}

async function loadOlder() {
  loadOlderButton.disabled = true;
  try {
    const page = await fetchHistory(
      oldest === null ? { limit: HISTORY_PAGE } : { before: oldest, limit: HISTORY_PAGE },
    );
    // Older lines go above the first message; the reader's view stays put.
    const first = log.querySelector("li.message");
    const fromBottom = log.scrollHeight - log.scrollTop;
    const older = document.createDocumentFragment();
    older.append(...page.messages.map(messageElement));
    log.insertBefore(older, first);
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

// Presence and typing ---------------------------------------------------------

function setUsers(next) {
  users = [...new Set(next)].sort((a, b) =>
    a.localeCompare(b, undefined, { sensitivity: "base" }),
  );
  $("users").replaceChildren(
    ...users.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      li.style.color = nicknameColor(name);
      return li;
    }),
  );
  $("count").textContent = String(users.length);
}

function renderTypers() {
  typingLine.textContent = [...typers.keys()]
    .map((name) => t("typing", { name }))
    .join(", ");
}

function addTyper(name) {
  clearTimeout(typers.get(name));
  typers.set(name, setTimeout(() => removeTyper(name), TYPING_EXPIRE_MS));
  renderTypers();
}

function removeTyper(name) {
  if (!typers.has(name)) return;
  clearTimeout(typers.get(name));
  typers.delete(name);
  renderTypers();
}

function clearTypers() {
  for (const timer of typers.values()) clearTimeout(timer);
  typers.clear();
  renderTypers();
}

// Frames from the server --------------------------------------------------------

const handlers = {
  welcome(frame) {
    nickname = frame.nickname;
    joined = true;
    joining = false;
    attempts = 0;
    $("login").hidden = true;
    composer.hidden = false;
    if (!everJoined) input.focus();
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
    acceptRange(frame.history, frame.last_seq);
    // More was missed than one frame holds: the rest comes over HTTP.
    if (frame.has_more) scheduleGapFill(0);
    if (everJoined) {
      line(t("reconnected"));
    } else {
      line(t("welcome", { room: frame.room.name }), "welcome");
      everJoined = true;
    }
    line(participantsText(frame.participants));
    setUsers(frame.users);
    resendPending();
    startPing();
  },
  message: receiveMessage,
  joined(frame) {
    line(t("joined", { name: frame.nickname }));
    line(participantsText(frame.participants));
    setUsers([...users, frame.nickname]);
  },
  left(frame) {
    line(t("left", { name: frame.nickname }));
    line(participantsText(frame.participants));
    removeTyper(frame.nickname);
    setUsers(users.filter((name) => name !== frame.nickname));
  },
  typing(frame) {
    if (frame.nickname !== nickname) addTyper(frame.nickname);
  },
  stop_typing(frame) {
    removeTyper(frame.nickname);
  },
  deleted(frame) {
    for (const id of frame.ids) {
      const el = log.querySelector(`li.message[data-id="${Number(id)}"]`);
      if (el) el.remove();
    }
    for (const [seq, waiting] of early) {
      if (frame.ids.includes(waiting.id)) early.delete(seq);
    }
  },
  pong(frame) {
    if (frame.last_seq > cursor) scheduleGapFill();
  },
  error(frame) {
    const refused = frame.client_id && pending.get(frame.client_id);
    if (refused && RETRY_ERRORS.includes(frame.code)) {
      // Not saved this time: it stays pending and goes again, with the same
      // client_id (saved at most once), each time a little later; a welcome
      // after a reconnect sends it at once.
      refused.tries = (refused.tries || 0) + 1;
      refused.element.title = frame.message;
      clearTimeout(refused.timer);
      refused.timer = setTimeout(
        () => {
          if (pending.has(frame.client_id) && joined) {
            send({ type: "message", text: refused.text, client_id: frame.client_id });
          }
        },
        Math.min(RESEND_AFTER_MS * 2 ** (refused.tries - 1), RESEND_MAX_MS),
      );
      if (frame.code !== "rate_limited") return;
    } else if (refused) {
      // Refused for good: shown as not sent, with a way to send it again.
      pending.delete(frame.client_id);
      markFailed(refused, frame.client_id, frame.message);
    }
    if (joined || FINAL_ERRORS.includes(frame.code)) {
      line(frame.message, "error");
      return;
    }
    joining = false;
    if (JOIN_ERRORS.includes(frame.code) || !everJoined) {
      // The socket stays open: the next nickname is tried on it.
      askNickname(frame.message);
    } else {
      // A rejoin the server could not serve just now: try again later.
      line(frame.message, "error");
      socket.close();
    }
  },
};

// The socket ----------------------------------------------------------------------

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function sendJoin() {
  joining = send({ type: "join", nickname, last_seq: cursor });
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/rooms/${encodeURIComponent(config.room)}/`;
}

function connect() {
  reconnectTimer = null;
  const ws = new WebSocket(socketUrl());
  socket = ws;
  let opened = false;
  let closed = false;
  const onClose = (code) => {
    if (closed) return;
    closed = true;
    onSocketClosed(code, opened);
  };
  ws.addEventListener("open", () => {
    opened = true;
    sendJoin();
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
    const handler = handlers[frame.type];
    if (handler) handler(frame);
  });
  ws.addEventListener("close", (event) => onClose(event.code));
  // A dead socket may take a long time to report its close: give up on it now.
  abandonSocket = () => {
    ws.close();
    onClose(1006);
  };
}

function onSocketClosed(code, opened) {
  const wasJoined = joined;
  joined = false;
  joining = false;
  stopPing();
  stopTyping();
  clearTypers();
  if (FINAL_CLOSE_CODES.includes(code)) {
    // The room is gone or archived; its error frame said so. No retry.
    closedForGood = true;
    composer.hidden = true;
    $("login").hidden = true;
    return;
  }
  if (wasJoined) line(t("disconnected"));
  else if (!opened && everJoined) line(t("reconnect_failed"));
  else if (!opened) $("login-error").textContent = t("connect_failed");
  scheduleReconnect();
}

// Reconnection forever: 1 s doubling to 5 s, each wait ±50 % at random so that
// a server restart is not met by every client at the same instant.
function scheduleReconnect() {
  if (closedForGood || reconnectTimer !== null) return;
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
    if (send({ type: "ping" }) && pongTimer === null) {
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

// Sending -------------------------------------------------------------------------

function markFailed(entry, clientId, reason) {
  clearTimeout(entry.timer);
  entry.element.classList.replace("pending", "failed");
  entry.element.title = reason;
  const again = document.createElement("button");
  again.type = "button";
  again.className = "resend";
  again.textContent = t("resend");
  again.addEventListener("click", () => {
    again.remove();
    entry.element.classList.replace("failed", "pending");
    entry.tries = 0;
    pending.set(clientId, entry);
    if (joined) send({ type: "message", text: entry.text, client_id: clientId });
  });
  entry.element.append(again);
}

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// The server saves a client_id once, so a message that did arrive before the
// socket dropped is not saved twice.
function resendPending() {
  for (const [clientId, entry] of pending) {
    send({ type: "message", text: entry.text, client_id: clientId });
  }
}

function stopTyping() {
  clearTimeout(typingTimer);
  typingTimer = null;
  if (typingSentAt) send({ type: "stop_typing" });
  typingSentAt = 0;
}

input.addEventListener("input", () => {
  if (!joined) return;
  if (!input.value) {
    stopTyping();
    return;
  }
  if (Date.now() - typingSentAt > TYPING_REPEAT_MS && send({ type: "typing" })) {
    typingSentAt = Date.now();
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
});

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  stopTyping();
  const clientId = newClientId();
  const element = messageElement({ nickname, text });
  element.classList.add("pending");
  append(element, { follow: true });
  pending.set(clientId, { text, element });
  // Away (or rejoining), it waits in `pending` and goes after the next welcome.
  if (joined) send({ type: "message", text, client_id: clientId });
  input.value = "";
});

loadOlderButton.addEventListener("click", loadOlder);

// Nickname ------------------------------------------------------------------------

function nicknameProblem(value) {
  const name = value.trim();
  if (!name) return t("nickname_empty");
  if ([...name].length > config.nicknameMaxLength) {
    return t("nickname_long", { max: config.nicknameMaxLength });
  }
  if (/\p{C}/u.test(name)) return t("nickname_control");
  return null;
}

function askNickname(message = "") {
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("nickname").focus();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (joining) return;
  const problem = nicknameProblem($("nickname").value);
  $("login-error").textContent = problem ?? "";
  if (problem) return;
  nickname = $("nickname").value.trim();
  // An open socket (after a refused nickname) tries again at once; one that is
  // connecting joins when it opens.
  if (socket === null) connect();
  else sendJoin();
});

async function showArchived() {
  try {
    const page = await fetchHistory({ limit: HISTORY_PAGE });
    log.append(...page.messages.map(messageElement));
    if (page.messages.length) oldest = page.messages[0].seq;
    loadOlderButton.hidden = !page.has_more;
  } catch (err) {
    console.warn("history failed", err);
    line(t("older_failed"), "error");
  }
}

if (config.archived) {
  showArchived();
} else if (config.nickname) {
  nickname = config.nickname;
  connect();
} else {
  askNickname();
}
