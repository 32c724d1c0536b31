// The room page's client: wires the modules together and answers the server's
// frames (docs/protocol.md).
//
//   config.js      what the server hands the page: room, codes, limits, URLs
//   strings.js     the page's translated words
//   log.js         the log's lines and messages
//   connection.js  the transport, reconnecting, the connection's state
//   socket.js      the WebSocket transport, its pings
//   http.js        the HTTP transport: POSTs, the event stream, long-polling
//   tabs.js        one HTTP stream for the tabs of a room
//   timeline.js    messages in seq order, history, gap fill, older pages,
//                  edits and deletions in place
//   composer.js    sending, pending and resending, typing signals
//   moderation.js  editing and deleting one's own messages; a moderator's
//                  delete, mute, kick and ban, and the dialog for them
//   removed.js     the page of someone kicked (a way back in) or banned
//   room.js        the room's name, topic and rules as the server tells them
//   title.js       the tab's title: the room's name, unread while hidden
//   presence.js    own nickname, the online list and count, who is typing
//   nickname.js    the nickname prompt

import * as composer from "./composer.js";
import { close, errors, frames, page } from "./config.js";
import * as connection from "./connection.js";
import { line } from "./log.js";
import * as moderation from "./moderation.js";
import * as nickname from "./nickname.js";
import * as presence from "./presence.js";
import * as removed from "./removed.js";
import * as room from "./room.js";
import { t } from "./strings.js";
import * as timeline from "./timeline.js";

function joinFrame() {
  return {
    type: frames.JOIN,
    nickname: presence.myNickname(),
    last_seq: timeline.lastSeq(),
  };
}

function sendJoin() {
  connection.join(joinFrame());
}

const transportLine = document.getElementById("transport");

function showTransport(kind) {
  transportLine.textContent = t(`transport_${kind}`);
  transportLine.dataset.transport = kind;
}

// The error frame that said the connection's end was coming (errors.final).
let farewell = null;
// Kicked, and joining again by choice: the composer has the focus once back.
let rejoining = false;

function welcome(frame, { quiet = false } = {}) {
  // Before the history is shown: its messages get the controls of who the
  // page is now.
  moderation.welcome(frame);
  room.show(frame.room);
  if (quiet) {
    // A stream, a poll or a new socket resuming from the page's cursor: the
    // reader is in the room all along.
    timeline.welcome(frame);
    presence.setUsers(frame.users);
    return;
  }
  const first = !timeline.started();
  presence.setMyNickname(frame.nickname);
  nickname.remember(frame.nickname);
  connection.welcomed();
  nickname.hide();
  composer.show({ focus: first || rejoining });
  rejoining = false;
  timeline.welcome(frame);
  if (first) line(t("welcome", { room: frame.room.name }), "welcome");
  else line(t("reconnected"));
  line(presence.participantsText(frame.participants));
  presence.setUsers(frame.users);
  composer.resendPending();
}

function error(frame) {
  if (composer.refuse(frame)) return;
  moderation.refused(frame);
  if (errors.final.includes(frame.code)) {
    // Kicked, banned, or the room closed: no reconnecting after this.
    farewell = frame;
    line(frame.message, "error");
    connection.finish();
    return;
  }
  if (connection.state() === "joined") {
    line(frame.message, "error");
    return;
  }
  connection.joinRefused();
  if (errors.nickname.includes(frame.code) || !timeline.started()) {
    // The socket stays open: the next nickname is tried on it. A remembered
    // one refused (someone else holds it now) is forgotten.
    if (errors.nickname.includes(frame.code)) nickname.remember(null);
    nickname.ask(frame.message, presence.myNickname());
  } else {
    // A rejoin the server could not serve just now: try again later.
    line(frame.message, "error");
    connection.drop();
  }
}

const handlers = {
  [frames.WELCOME]: welcome,
  [frames.MESSAGE]: timeline.receive,
  [frames.JOINED](frame) {
    line(t("joined", { name: frame.nickname }));
    line(presence.participantsText(frame.participants));
    presence.addUser(frame.nickname);
  },
  [frames.LEFT](frame) {
    line(t("left", { name: frame.nickname }));
    line(presence.participantsText(frame.participants));
    presence.removeTyper(frame.nickname);
    presence.removeUser(frame.nickname);
  },
  [frames.TYPING](frame) {
    presence.addTyper(frame.nickname);
  },
  [frames.STOP_TYPING](frame) {
    presence.removeTyper(frame.nickname);
  },
  [frames.DELETED](frame) {
    timeline.forget(frame.ids);
  },
  [frames.EDITED]: timeline.revise,
  [frames.ROOM](frame) {
    room.show(frame.room);
  },
  [frames.MODERATED]: moderation.moderated,
  [frames.PONG](frame) {
    timeline.behind(frame.last_seq);
  },
  [frames.ERROR]: error,
};

connection.listen({
  open: sendJoin,
  joinFrame,
  lastSeq: timeline.lastSeq,
  transport: showTransport,
  frame(frame, options) {
    const handler = handlers[frame.type];
    if (handler) handler(frame, options);
  },
  closed({ opened, wasJoined, final, code }) {
    composer.stopTyping();
    presence.clearTypers();
    if (final) {
      composer.hide();
      nickname.hide();
      presence.clear();
      // Said by the error frame before the close, or by the close code alone
      // (when the server could not send the frame before it).
      const said = farewell ?? {};
      farewell = null;
      const banned = said.code === errors.codes.BANNED || code === close.codes.BANNED;
      const kicked = said.code === errors.codes.KICKED || code === close.codes.KICKED;
      if (banned || kicked) removed.show({ banned, message: said.message });
      return;
    }
    if (wasJoined) line(t("disconnected"));
    else if (!opened && timeline.started()) line(t("reconnect_failed"));
    else if (!opened) nickname.say(t("connect_failed"));
  },
});

nickname.onChosen(
  (name) => {
    presence.setMyNickname(name);
    // An open socket (after a refused nickname) tries again at once; one that
    // is connecting, or waiting to reconnect, joins when it opens.
    if (connection.state() === "idle") connection.connect();
    else sendJoin();
  },
  () => connection.state() === "joining",
);

// Another nickname: out of the room, and the prompt, with the old one to mend.
composer.onChangeNickname(() => {
  composer.stopTyping();
  connection.leave();
  composer.hide();
  nickname.remember(null);
  nickname.ask("", presence.myNickname());
});

// Kicked, the person may come back: the same nickname, from where they were.
removed.onRejoin(() => {
  rejoining = true;
  connection.connect();
});

showTransport(connection.transportKind());

if (page.archived) {
  timeline.showArchived();
} else if (page.nickname || nickname.remembered()) {
  // Signed in, or back in a room joined before: in without the prompt.
  presence.setMyNickname(page.nickname || nickname.remembered());
  connection.connect();
} else {
  nickname.ask();
}
