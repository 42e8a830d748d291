#!/bin/sh
# Keeps the module running on a board without systemd: restarts it when it exits (backing off
# while it keeps failing fast; exit status 2, bad configuration, is final), stops it and itself on
# SIGTERM. Usage:
#   supervise.sh ROOT COMMAND...   (ROOT holds run/ and logs/; COMMAND runs in ROOT/app)
ROOT=$1
shift
mkdir -p "$ROOT/run" "$ROOT/logs"
echo $$ > "$ROOT/run/supervisor.pid"
stopping=0
child=
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
delay=1
while [ "$stopping" = 0 ]; do
  started=$(date +%s)
  (cd "$ROOT/app" && exec "$@") >> "$ROOT/logs/module.log" 2>&1 &
  child=$!
  echo "$child" > "$ROOT/run/module.pid"
  wait "$child"
  rc=$?
  [ "$stopping" = 1 ] && break
  if [ "$rc" = 2 ]; then  # the module's "bad input" status: restarting cannot fix it
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) supervisor: module exited with 2 (bad configuration), not restarting" >> "$ROOT/logs/module.log"
    break
  fi
  if [ $(( $(date +%s) - started )) -ge 30 ]; then delay=1; fi
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) supervisor: module exited with $rc, restarting in ${delay}s" >> "$ROOT/logs/module.log"
  sleep "$delay"
  delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
done
# the module may still be flushing its outbox after SIGTERM: wait for it, bounded by the caller's timeout
[ -n "$child" ] && wait "$child" 2>/dev/null
rm -f "$ROOT/run/supervisor.pid" "$ROOT/run/module.pid"
