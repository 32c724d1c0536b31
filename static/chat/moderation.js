// What the page may do to the room's messages and people, and the server's
// answers: Edit and Delete on its own messages (editing in place, while
// limits.edit_seconds allow), and for a moderator Delete, Mute, Kick and Ban
// on everyone else's, the choices of the last three asked in a dialog. The
// server checks all of it again (chat/acts.py): these controls only spare
// people the buttons that would be refused.

import { errors, frames, limits } from "./config.js";
import { send } from "./connection.js";
import { line, log } from "./log.js";
import { locale, t } from "./strings.js";

// setTimeout runs a longer delay at once.
const TIMER_MAX_MS = 2147483647;

// The actions a moderator takes on a participant: the words of each.
const ACTIONS = {
  [frames.MUTE]: { word: "action_mute", label: "action_mute_label", title: "dialog_mute" },
  [frames.KICK]: { word: "action_kick", label: "action_kick_label", title: "dialog_kick" },
  [frames.BAN]: { word: "action_ban", label: "action_ban_label", title: "dialog_ban" },
};

// Who the page is to the room (the welcome's `you`): the author id of its own
// messages, and whether it moderates the room.
let you = null;
// The message of the last edit sent: an edit_window_closed is about it.
let lastEdit = null;

export function welcome(frame) {
  const before = you;
  you = frame.you ?? null;
  if (before?.author === you?.author && before?.moderator === you?.moderator) return;
  // A new role (signed in elsewhere, made a moderator meanwhile): every
  // message shown gets the controls that go with it.
  for (const li of log.querySelectorAll("li.message[data-id]")) equip(li);
}

function control(text, label, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "control";
  button.textContent = text;
  button.setAttribute("aria-label", label);
  button.addEventListener("click", () => action(button));
  return button;
}

// Time left to edit a message, in ms, by this page's clock (the server's
// refusal settles a clock that is wrong).
function editTimeLeft(li) {
  if (!li.dataset.ts) return 0;
  return Date.parse(li.dataset.ts) + limits.edit_seconds * 1000 - Date.now();
}

// The controls this page has over a message element (none before the
// welcome, on a pending message or on a deleted one).
export function equip(li) {
  li.querySelector(".actions")?.remove();
  if (you === null || !li.dataset.id || li.classList.contains("deleted")) return;
  const own = li.dataset.author === you.author;
  if (!own && !you.moderator) return;
  const id = Number(li.dataset.id);
  const name = li.querySelector(".nickname").textContent;
  const actions = document.createElement("span");
  actions.className = "actions";
  if (own) {
    const left = editTimeLeft(li);
    if (left > 0) {
      const edit = control(t("edit"), t("edit_own"), () => startEdit(li, id, edit));
      edit.classList.add("edit");
      actions.append(edit);
      setTimeout(() => edit.remove(), Math.min(left, TIMER_MAX_MS));
    }
    actions.append(control(t("delete"), t("delete_own"), () => takeBack(id)));
  } else {
    actions.append(control(t("delete"), t("delete_other", { name }), () => takeBack(id)));
    for (const [action, words] of Object.entries(ACTIONS)) {
      actions.append(
        control(t(words.word), t(words.label, { name }), (button) =>
          ask(action, id, name, button),
        ),
      );
    }
  }
  li.append(actions);
}

function sendOrSay(frame) {
  if (send(frame)) return true;
  line(t("not_connected"), "error");
  return false;
}

// The server's `deleted` puts "message deleted" in its place, on every page.
function takeBack(id) {
  sendOrSay({ type: frames.DELETE, id });
}

// Editing in place: the text becomes a field; Enter (or Save) sends the new
// text, Escape (or Cancel) leaves it as it was. The server's `edited` shows
// the change, here as on every page.
function startEdit(li, id, editButton) {
  if (li.querySelector("form.edit")) return;
  const body = li.querySelector(".text");
  const form = document.createElement("form");
  form.className = "edit";
  const field = document.createElement("input");
  field.value = body.textContent;
  field.maxLength = limits.max_message_length;
  field.enterKeyHint = "done";
  field.setAttribute("aria-label", t("edit_field"));
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = t("edit_save");
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "secondary";
  cancel.textContent = t("edit_cancel");
  form.append(field, save, cancel);
  body.after(form);
  li.classList.add("editing");
  field.focus();
  field.setSelectionRange(field.value.length, field.value.length);

  function close() {
    form.remove();
    li.classList.remove("editing");
    if (editButton.isConnected) editButton.focus();
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = field.value;
    if (!text.trim()) return;
    if (text === body.textContent) {
      close();
      return;
    }
    if (sendOrSay({ type: frames.EDIT, id, text })) {
      lastEdit = id;
      close();
    }
  });
  cancel.addEventListener("click", close);
  field.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    close();
  });
}

// An error frame: an edit refused as too late takes that message's Edit away.
export function refused(frame) {
  if (frame.code !== errors.codes.EDIT_WINDOW_CLOSED || lastEdit === null) return;
  log.querySelector(`li.message[data-id="${lastEdit}"] .edit`)?.remove();
  lastEdit = null;
}

// The moderator's answer: what was done, to whom, until when.
export function moderated(frame) {
  const until = frame.until
    ? new Date(frame.until).toLocaleString(locale, { dateStyle: "medium", timeStyle: "short" })
    : null;
  let key = "did_kick";
  if (frame.action === frames.MUTE) key = "did_mute";
  else if (frame.action === frames.BAN) {
    key = frame.everywhere ? "did_ban_everywhere" : "did_ban";
    if (until === null) key += "_for_good";
  }
  line(t(key, { name: frame.nickname, until }), "moderated");
}

// The dialog ------------------------------------------------------------------

const dialog = document.getElementById("moderate");
const form = document.getElementById("moderate-form");
const title = document.getElementById("moderate-title");
const confirmButton = document.getElementById("moderate-confirm");
const muteFor = document.getElementById("moderate-mute-for");
const muteSeconds = document.getElementById("moderate-mute-seconds");
const banFor = document.getElementById("moderate-ban-for");
const banSeconds = document.getElementById("moderate-ban-seconds");
const banScope = document.getElementById("moderate-ban-scope");
const reason = document.getElementById("moderate-reason");
const everywhere = document.getElementById("moderate-everywhere");
const address = document.getElementById("moderate-address");

// What the open dialog is about: { action, id, opener }.
let asking = null;

// A duration longer than the server allows is not offered.
for (const option of [...muteSeconds.options, ...banSeconds.options]) {
  if (Number(option.value) > limits.sanction_max_seconds) option.remove();
}

function ask(action, id, name, opener) {
  asking = { action, id, opener };
  form.reset();
  title.textContent = t(ACTIONS[action].title, { name });
  confirmButton.textContent = t(ACTIONS[action].word);
  muteFor.hidden = action !== frames.MUTE;
  banFor.hidden = action !== frames.BAN;
  banScope.hidden = action !== frames.BAN;
  // Modal: the rest of the page is inert until it closes; its first field
  // has the focus.
  dialog.showModal();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const { action, id } = asking;
  const frame = { type: action, id, reason: reason.value.trim() };
  if (action === frames.MUTE) frame.seconds = Number(muteSeconds.value);
  if (action === frames.BAN) {
    // "For good" has no number.
    frame.seconds = banSeconds.value ? Number(banSeconds.value) : null;
    frame.everywhere = everywhere.checked;
    frame.address = address.checked;
  }
  if (sendOrSay(frame)) dialog.close();
});

document.getElementById("moderate-cancel").addEventListener("click", () => dialog.close());

// Escape closes it too (the browser's own); either way the focus goes back
// to the button that opened it.
dialog.addEventListener("close", () => {
  const opener = asking?.opener;
  asking = null;
  if (opener?.isConnected) opener.focus();
});

// Tab and Shift+Tab go round the dialog's own controls, never out of it.
dialog.addEventListener("keydown", (event) => {
  if (event.key !== "Tab") return;
  const focusable = [...dialog.querySelectorAll("select, input, button")].filter(
    (el) => !el.disabled && el.getClientRects().length,
  );
  const first = focusable[0];
  const last = focusable.at(-1);
  if (event.shiftKey && document.activeElement === first) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault();
    first.focus();
  }
});
