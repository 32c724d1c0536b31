// The page's words, translated by the template (the <template id="chat-strings">
// in templates/chat/room.html); {name}-style fields are filled in here.

const template = document.getElementById("chat-strings");
const strings = Object.fromEntries(
  [...template.content.querySelectorAll("[data-key]")].map((el) => [
    el.dataset.key,
    el.textContent,
  ]),
);

export function t(key, values = {}) {
  return strings[key].replace(/\{(\w+)\}/g, (_match, name) => String(values[name]));
}
