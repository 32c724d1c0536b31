// The room page's client. Follows docs/protocol.md; every user-typed string is
// rendered with textContent.

const config = JSON.parse(document.getElementById("chat-config").textContent);

const TYPING_IDLE_MS = 400;
const PING_INTERVAL_MS = 15000;
const GAP_WAIT_MS = 300;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 5000;
const FINAL_CLOSE_CODES = [4404, 4410];
const JOIN_ERRORS = ["invalid_nickname", "nickname_taken"];

const $ = (id) => document.getElementById(id);
const log = $("log");
const composer = $("composer");
const input = $("message");
const typingLine = $("typing");

let nickname = null;
let socket = null;
let joined = false;
let everJoined = false;
let closedForGood = false;
let attempts = 0;
let cursor = null; // every message up to this seq is shown (or was deleted)
let oldest = null; // seq of the oldest message shown, for "load older"
const early = new Map(); // seq -> message frame that came before its turn
const pending = new Map(); // client_id -> {text, element}
const typers = new Map(); // nickname -> true
let gapTimer = null;
let gapFetching = false;
let pingTimer = null;
let typingTimer = null;
let typingSent = false;

// Nickname colours: a stable hash of the nickname picks the hue.
export function nicknameColor(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) | 0;
  return `hsl(${Math.abs(hash) % 360}, 65%, 40%)`;
}

function scrollDown() {
  log.scrollTop = log.scrollHeight;
  window.scrollTo(0, document.body.scrollHeight);
}

function line(text, kind = "log") {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  log.append(li);
  scrollDown();
  return li;
}

function participantsText(n) {
  return n === 1 ? "there's 1 participant" : `there are ${n} participants`;
}

function renderMessage(frame, { prepend = false } = {}) {
  const li = document.createElement("li");
  li.className = "message";
  li.dataset.id = frame.id ?? "";
  li.dataset.seq = frame.seq ?? "";
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
  if (prepend) {
    const after = $("log").querySelector("li.message");
    log.insertBefore(li, after);
  } else {
    log.append(li);
    scrollDown();
  }
  return li;
}

function showMessage(frame) {
  const mine = frame.client_id && pending.get(frame.client_id);
  if (mine) {
    pending.delete(frame.client_id);
    mine.element.remove();
  }
  renderMessage(frame);
  if (oldest === null || frame.seq < oldest) oldest = frame.seq;
  removeTyper(frame.nickname);
}

// Messages are shown in seq order, each once. One that comes early waits for
// the ones before it; a gap that does not close by itself is fetched.
function receiveMessage(frame) {
  if (cursor !== null && frame.seq <= cursor) return;
  if (cursor === null || frame.seq === cursor + 1) {
    showMessage(frame);
    cursor = frame.seq;
    drainEarly();
    return;
  }
  early.set(frame.seq, frame);
  scheduleGapFill();
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

function scheduleGapFill() {
  if (gapTimer === null) gapTimer = setTimeout(fillGap, GAP_WAIT_MS);
}

async function fillGap() {
  gapTimer = null;
  if (gapFetching || cursor === null) return;
  gapFetching = true;
  try {
    let more = true;
    while (more) {
      const page = await fetchHistory(`after=${cursor}&limit=200`);
      for (const frame of page.messages) receiveMessage(frame);
      if (page.through > cursor) cursor = page.through;
      drainEarly();
      more = page.has_more;
    }
  } catch (err) {
    console.warn("gap fill failed", err);
  } finally {
    gapFetching = false;
  }
  if (early.size) scheduleGapFill();
}

async function fetchHistory(query) {
  const response = await fetch(`/rooms/${encodeURIComponent(config.room)}/messages?${query}`, {
    headers: { Accept: "application/json" },
  });
  if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
  return response.json();
}

async function loadOlder() {
  const button = $("load-older");
  button.disabled = true;
  try {
    const query = oldest === null ? "limit=50" : `before=${oldest}&limit=50`;
    const page = await fetchHistory(query);
    for (const frame of [...page.messages].reverse()) {
      renderMessage(frame, { prepend: true });
      oldest = frame.seq;
    }
    button.hidden = !page.has_more;
  } catch (err) {
    line("could not load older messages", "log error");
  } finally {
    button.disabled = false;
  }
}

function renderUsers(users) {
  const list = $("users");
  list.replaceChildren(
    ...users.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      li.style.color = nicknameColor(name);
      return li;
    }),
  );
  $("count").textContent = `(${users.length})`;
}

let users = [];
function setUsers(next) {
  users = [...next].sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" }));
  renderUsers(users);
}

function renderTypers() {
  const names = [...typers.keys()];
  typingLine.textContent = names.length
    ? names.map((n) => `${n} is typing`).join(", ")
    : "";
}

function removeTyper(name) {
  if (typers.delete(name)) renderTypers();
}

// Frames from the server.
const handlers = {
  welcome(frame) {
    nickname = frame.nickname;
    joined = true;
    attempts = 0;
    $("login").hidden = true;
    composer.hidden = false;
    input.focus();
    if (everJoined) {
      line("you have been reconnected");
    } else {
      line(`Welcome to ${frame.room.name}`, "log welcome");
      everJoined = true;
    }
    line(participantsText(frame.participants));
    setUsers(frame.users);
    if (cursor === null) {
      for (const m of frame.history) {
        showMessage(m);
        if (oldest === null || m.seq < oldest) oldest = m.seq;
      }
      $("load-older").hidden = frame.history.length === 0 || frame.history[0].seq <= 1;
    } else {
      for (const m of frame.history) receiveMessage(m);
    }
    if (cursor === null || frame.last_seq > cursor) cursor = frame.last_seq;
    drainEarly();
    resendPending();
    startPing();
  },
  message: receiveMessage,
  joined(frame) {
    line(`${frame.nickname} joined`);
    line(participantsText(frame.participants));
    setUsers([...users.filter((u) => u !== frame.nickname), frame.nickname]);
  },
  left(frame) {
    line(`${frame.nickname} left`);
    line(participantsText(frame.participants));
    removeTyper(frame.nickname);
    setUsers(users.filter((u) => u !== frame.nickname));
  },
  typing(frame) {
    if (frame.nickname === nickname) return;
    typers.set(frame.nickname, true);
    renderTypers();
  },
  stop_typing(frame) {
    removeTyper(frame.nickname);
  },
  deleted(frame) {
    for (const id of frame.ids) {
      const el = log.querySelector(`li.message[data-id="${Number(id)}"]`);
      if (el) el.remove();
    }
  },
  pong(frame) {
    if (cursor !== null && frame.last_seq > cursor) scheduleGapFill();
  },
  error(frame) {
    if (!joined && JOIN_ERRORS.includes(frame.code)) {
      askNickname(frame.message);
      return;
    }
    line(frame.message, "log error");
  },
};

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/rooms/${encodeURIComponent(config.room)}/`;
}

function connect() {
  socket = new WebSocket(socketUrl());
  let opened = false;
  socket.addEventListener("open", () => {
    opened = true;
    send({ type: "join", nickname, last_seq: cursor });
  });
  socket.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    const handler = handlers[frame.type];
    if (handler) handler(frame);
  });
  socket.addEventListener("close", (event) => {
    const wasJoined = joined;
    joined = false;
    stopPing();
    typers.clear();
    renderTypers();
    if (FINAL_CLOSE_CODES.includes(event.code)) {
      closedForGood = true;
      composer.hidden = true;
      if (event.reason) line(event.reason, "log error");
      return;
    }
    if (wasJoined) line("you have been disconnected");
    else if (!opened && everJoined) line("attempt to reconnect has failed");
    scheduleReconnect();
  });
}

// Reconnection forever: 1 s doubling to 5 s, each wait ±50 % at random so that
// a server restart is not met by every client at the same instant.
function scheduleReconnect() {
  if (closedForGood) return;
  const base = Math.min(BACKOFF_FIRST_MS * 2 ** attempts, BACKOFF_MAX_MS);
  attempts += 1;
  const delay = base * (0.5 + Math.random());
  setTimeout(connect, delay);
}

function startPing() {
  stopPing();
  pingTimer = setInterval(() => send({ type: "ping" }), PING_INTERVAL_MS);
}

function stopPing() {
  if (pingTimer !== null) clearInterval(pingTimer);
  pingTimer = null;
}

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function resendPending() {
  for (const [clientId, entry] of pending) {
    send({ type: "message", text: entry.text, client_id: clientId });
  }
}

function stopTyping() {
  clearTimeout(typingTimer);
  typingTimer = null;
  if (typingSent) send({ type: "stop_typing" });
  typingSent = false;
}

input.addEventListener("input", () => {
  if (!joined) return;
  if (!typingSent) typingSent = send({ type: "typing" });
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
});

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  stopTyping();
  const clientId = newClientId();
  const element = renderMessage({ nickname, text });
  element.classList.add("pending");
  pending.set(clientId, { text, element });
  send({ type: "message", text, client_id: clientId });
  input.value = "";
});

$("load-older").addEventListener("click", loadOlder);

function validNickname(value) {
  const name = value.trim();
  if (!name) return "Please choose a nickname.";
  if ([...name].length > config.nicknameMaxLength) {
    return `A nickname has at most ${config.nicknameMaxLength} characters.`;
  }
  if (/\p{C}/u.test(name)) return "A nickname cannot contain control characters.";
  return null;
}

function askNickname(message = "") {
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("nickname").focus();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const problem = validNickname($("nickname").value);
  if (problem) {
    $("login-error").textContent = problem;
    return;
  }
  nickname = $("nickname").value.trim();
  $("login-error").textContent = "";
  // After a refused nickname the socket is still open: try again on it.
  if (!send({ type: "join", nickname, last_seq: cursor })) connect();
});

async function showArchived() {
  const page = await fetchHistory("limit=50");
  for (const frame of page.messages) showMessage(frame);
  $("load-older").hidden = !page.has_more;
}

if (config.archived) {
  showArchived();
} else if (config.nickname) {
  nickname = config.nickname;
  connect();
} else {
  askNickname();
}
