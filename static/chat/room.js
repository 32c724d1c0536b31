// The room as the server last described it (a welcome's `room`, or a `room`
// frame after a moderator changed it): its name, in the heading and the tab's
// title, its topic, and the rules its posting keeps.

import { duration, t } from "./strings.js";
import { setName } from "./title.js";

const heading = document.getElementById("room-name");
const topic = document.getElementById("room-topic");
const rules = document.getElementById("room-rules");

export function show(details) {
  heading.textContent = details.name;
  setName(details.name);
  topic.textContent = details.topic;
  topic.hidden = !details.topic;
  const said = [];
  if (details.slow_mode_seconds) {
    said.push(t("rule_slow_mode", { every: duration(details.slow_mode_seconds) }));
  }
  if (details.members_only) said.push(t("rule_members_only"));
  rules.textContent = said.join(" ");
  rules.hidden = !said.length;
}
