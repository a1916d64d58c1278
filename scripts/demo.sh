#!/usr/bin/env bash
# Two devices and an embedded hub on this machine (make demo): an edit made on one device
# travels through the hub to the other. Ctrl-C stops all three. DEMO_ONCE=1 stops after the walk.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DIR=${DEMO_DIR:-var/demo}
HUB_PORT=${DEMO_HUB_PORT:-8100}
A_PORT=${DEMO_A_PORT:-8001}
B_PORT=${DEMO_B_PORT:-8002}
mkdir -p "$DIR"
unset MONGO_URI DB_CONNECTOR HUB_URL HUB_TOKEN

for port in "$HUB_PORT" "$A_PORT" "$B_PORT"; do  # an earlier demo still running, or another server
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "make demo: port $port is taken (an earlier demo still running?): stop it, or choose other ports" \
      "with DEMO_HUB_PORT, DEMO_A_PORT and DEMO_B_PORT" >&2
    exit 1
  fi
done

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
SQLITE_PATH="$DIR/hub.sqlite3" PORT=$HUB_PORT LOG_LEVEL=WARNING "$BIN/python" -m server --hub & pids+=($!)
up() {  # wait until the server on this port answers its health check
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$1/api/v1/health" >/dev/null && return; sleep 0.1; done
  echo "nothing answers on :$1" >&2; exit 1
}
device() {  # name port: a device server with no hub settings (it is paired below)
  SQLITE_PATH="$DIR/$1.sqlite3" PORT=$2 SYNC_INTERVAL_SECONDS=5 LOG_LEVEL=WARNING "$BIN/python" -m server & pids+=($!)
}
device laptop "$A_PORT"
device phone "$B_PORT"
api() {  # method port path [json body]; an error answer is printed whole
  curl -sS --fail-with-body -X "$1" "http://127.0.0.1:$2/api/v1$3" -H 'Content-Type: application/json' ${4:+-d "$4"}
}
up "$HUB_PORT"
up "$A_PORT"
up "$B_PORT"
pair() {  # name port: invite the device at the hub and paste the invitation into it (once: it keeps the hub)
  if ! curl -sf "http://127.0.0.1:$2/api/v1/sync/status" | grep -q '"hubFrom": *"store"'; then
    invitation=$(SQLITE_PATH="$DIR/hub.sqlite3" PORT=$HUB_PORT "$BIN/flask" --app server.api hub invite learner \
      --name "$1" | tail -n 1)
    api POST "$2" /sync/hub "{\"invitation\": \"$invitation\"}" >/dev/null
    echo "$1 paired with $invitation"
  fi
}
pair laptop "$A_PORT"
pair phone "$B_PORT"
echo "hub on :$HUB_PORT, laptop on :$A_PORT, phone on :$B_PORT"
# The demo course is made on the first run, and edited on every later one (the stores are kept).
if curl -sf "http://127.0.0.1:$A_PORT/api/v1/courses/demo" >/dev/null; then
  api PATCH "$A_PORT" /courses/demo "{\"notes\": \"edited on the laptop at $(date +%T)\"}" >/dev/null
else
  api POST "$A_PORT" /courses '{"id": "demo", "title": "Made on the laptop", "source": "https://ocw.mit.edu"}' >/dev/null
fi
api POST "$A_PORT" /sync '{}' >/dev/null
api POST "$B_PORT" /sync '{}' >/dev/null
echo "the phone now has: $(api GET "$B_PORT" /courses/demo)"
if [ "${DEMO_ONCE:-0}" = 1 ]; then exit 0; fi
echo "edit on either device (curl, or the PWA at :$A_PORT / :$B_PORT); they sync every 5 s. Ctrl-C stops."
wait
