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

// The page's language (<html lang>, the server's choice): dates, times and
// plural forms follow it, not the browser's own settings.
export const locale = document.documentElement.lang || "en";
const plurals = new Intl.PluralRules(locale);

// A string that depends on a count: `key.one`, `key.few`, … as the language's
// plural rules choose for `n`, else `key.other` (the template gives the forms
// a language has; English, French and Swedish use one and other, Korean other).
export function tn(key, n, values = {}) {
  const form = `${key}.${plurals.select(n)}`;
  return t(form in strings ? form : `${key}.other`, { ...values, count: n });
}

// A span of time as the page says it: "45 s", "9 min", "3 h", "2 d", rounded
// up (what is left is never said to be less than it is), in the same steps as
// the server's own words for it (chat/services/sanctions.py).
export function duration(seconds) {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 120) return t("seconds_short", { n: s });
  const minutes = Math.ceil(s / 60);
  if (minutes < 120) return t("minutes_short", { n: minutes });
  const hours = Math.ceil(minutes / 60);
  if (hours < 48) return t("hours_short", { n: hours });
  return t("days_short", { n: Math.ceil(hours / 24) });
}
