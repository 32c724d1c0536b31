// What the server hands the page (chat/views.py, templates/chat/room.html):
// this room and visitor, and the protocol as chat/protocol.py defines it —
// frame types, error and close codes, limits and addresses. The page's modules
// take every one of them from here and write none of them down themselves.

function read(id) {
  return JSON.parse(document.getElementById(id).textContent);
}

// room (its slug), nickname (a signed-in user's, or ""), archived, and the
// CSRF token the HTTP transport's POSTs carry.
export const page = read("chat-config");

export const { frames, errors, close, limits, urls, fallback } = read("chat-protocol");
