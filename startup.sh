#!/usr/bin/env bash
# The start-up command of the chat on Azure App Service (Linux, Python):
#   az webapp config set ... --startup-file "bash startup.sh"
# App Service runs it in the deployed app's folder with the build's packages
# importable, PORT set to the port its front end forwards to and WEBSITE_HOSTNAME
# to the app's host name. docs/deploy-azure.md has the rest. Everything runs
# through the python on PATH ("python manage.py ...", "python -m daphne"), never
# through an installed console script such as "daphne": that works whether the
# build's virtual environment is activated or only on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")"

# Log lines reach App Service's log stream as they are written.
export PYTHONUNBUFFERED=1

# Scaled-out instances start together and may race to apply the same migration:
# the one that loses fails, and tries again once the winner is done.
attempt=1
until python manage.py migrate --noinput; do
  if [ "$attempt" -ge 3 ]; then
    echo "startup.sh: migrate failed $attempt times; not starting" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 5
done

# The build collects static files (Oryx does for Django apps); a deployment
# that skipped the build has no manifest yet, and gets them collected here.
if [ ! -f "${STATIC_ROOT:-staticfiles}/staticfiles.json" ]; then
  python manage.py collectstatic --noinput
fi

# exec: Daphne takes this shell's PID, so App Service's SIGTERM reaches it.
# No --proxy-headers: Daphne would take the left-most X-Forwarded-For entry,
#   which the client writes itself. The app reads the entry App Service's
#   front end appended (CHAT_PROXY_HOPS, 1 by itself on App Service).
# --ping-interval 15: an idle WebSocket still carries a ping every 15 s, well
#   inside the idle timeouts of the proxies on the way (App Service's front
#   end, Application Gateway's backend request timeout, Azure Load Balancer's
#   4 minutes); --ping-timeout 30 drops a peer that stopped answering.
# --websocket-max-*-size 65536: the protocol's 64 KiB frame limit
#   (CHAT_MAX_FRAME_BYTES); Daphne drops a connection that sends a larger one
#   instead of buffering it. The chat's client never does (the limit is in the
#   welcome frame).
exec python -m daphne \
  --bind 0.0.0.0 \
  --port "${PORT:-8000}" \
  --ping-interval 15 \
  --ping-timeout 30 \
  --websocket-max-message-size 65536 \
  --websocket-max-frame-size 65536 \
  chatproject.asgi:application
