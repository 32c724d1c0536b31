// Light or dark: as the system prefers, until the reader chooses with the
// header's switch; the choice is kept in this browser (style.css reads
// <html data-theme>).

const KEY = "chat-theme";
const root = document.documentElement;
const button = document.getElementById("theme");
const system = window.matchMedia("(prefers-color-scheme: dark)");

function stored() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null; // storage refused (private mode): the system's choice
  }
}

function dark() {
  const chosen = root.dataset.theme;
  return chosen ? chosen === "dark" : system.matches;
}

function show() {
  button.setAttribute("aria-pressed", String(dark()));
}

const chosen = stored();
if (chosen === "dark" || chosen === "light") root.dataset.theme = chosen;
show();
system.addEventListener("change", show);
button.addEventListener("click", () => {
  root.dataset.theme = dark() ? "light" : "dark";
  try {
    localStorage.setItem(KEY, root.dataset.theme);
  } catch {
    // kept for this page only
  }
  show();
});
button.hidden = false;
