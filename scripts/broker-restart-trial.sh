#!/usr/bin/env bash
# A Mosquitto restart under hub replicas, end to end on loopback (docs/scale.md, "What is not there yet"):
# a throwaway PostgreSQL cluster, Mosquitto configured as docs/scale.md's trial (persistence true,
# max_queued_messages 0), one or two edgeml-hub replicas with --SharedGroup, AGENTS real edgeml-agent processes
# sending COUNT predictions each as fast as they can (--fast). Mosquitto is stopped with SIG after
# RESTART_AT seconds and started again DOWN seconds later. Then it counts, per device: produced / acknowledged
# (agent: produced minus what is left in its outbox) vs rows stored in PostgreSQL, missing and duplicates.
# Everything it starts is stopped at the end, also on failure (by PID).
#
#   scripts/broker-restart-trial.sh                       # 2 replicas, 3 agents x 30000, SIGTERM at 8 s, down 3 s
#   RESTART_AT=3 SIG=KILL REPLICAS=1 scripts/broker-restart-trial.sh
#
# Needs: a Debug build (dotnet build), Debian's mosquitto and postgresql, the published agent
# (./build.sh publish linux-x64: artifacts/publish/linux-x64/edgeml-agent; AGENT=... to use another one). Run as root
# or as a user that may run initdb.
# Exit status: 0 when nothing acknowledged is missing and nothing is stored twice, 1 otherwise, 2 on a setup failure.
set -euo pipefail

RESTART_AT=${RESTART_AT:-8}   # seconds after the agents start
DOWN=${DOWN:-3}               # seconds the broker stays away
SIG=${SIG:-TERM}              # TERM (systemctl restart) or KILL
REPLICAS=${REPLICAS:-2}       # 1 or 2
AGENTS=${AGENTS:-3}
COUNT=${COUNT:-30000}
AUTOSAVE=${AUTOSAVE:-}        # Mosquitto autosave_interval (empty: its default, as docs/scale.md's trial config)
STALL=${STALL:-0}             # >0: hold back the store's writes (a lock on records) from 1 s before the broker stops
                              # until STALL s after it is back, so that group commits end after the replicas reconnected
PAUSE=${PAUSE:-0}             # >0: the replicas are stopped (SIGSTOP) PAUSE s before the broker stops, and go on
                              # (SIGCONT) when it is back: what devices send meanwhile waits in the broker's queues
KEEP=${KEEP:-0}               # 1: keep the temp folder (logs) after the run (kept anyway when it fails)

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HUB=$ROOT/fleet-hub/EdgeMl.FleetHub/bin/Debug/net10.0/edgeml-hub.dll
AGENT=${AGENT:-$ROOT/artifacts/publish/linux-x64/edgeml-agent}
MODEL=${MODEL:-$ROOT/models/vibration/vibration-fault-int8.edgepkg}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
for f in "$HUB" "$AGENT" "$MODEL" "$PGBIN/initdb" /usr/sbin/mosquitto; do
  [ -e "$f" ] || { echo "broker-restart-trial: $f is missing (dotnet build; ./build.sh publish linux-x64; apt-get install mosquitto postgresql)" >&2; exit 2; }
done

T=$(mktemp -d /tmp/edgeml-trial-XXXXXX)
chmod 755 "$T"
PIDS=()
MOSQ_PID=
# initdb refuses root: as root, PostgreSQL runs as user postgres (as the tests' PostgresCluster does).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log() { printf '[%6.1f s] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
T0=$(date +%s.%N)

cleanup() {
  local rc=$?
  set +e
  for p in "${PIDS[@]}" $MOSQ_PID; do kill -KILL "$p" 2>/dev/null; done
  for p in "${PIDS[@]}" $MOSQ_PID; do wait "$p" 2>/dev/null; done
  if [ -f "$T/pg/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null 2>&1
    pm=$(head -1 "$T/pg/data/postmaster.pid" 2>/dev/null)
    [ -n "$pm" ] && [ "$(ps -o comm= -p "$pm" 2>/dev/null)" = postgres ] && kill -KILL "$pm" 2>/dev/null
  fi
  if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then echo "logs kept in $T"; else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# PostgreSQL: a throwaway cluster on a unix socket in $T (as tests/EdgeMl.TestUtilities/Postgres/PostgresCluster.cs).
PGPORT=$(free_port)
mkdir -p "$T/pg"; [ "$(id -u)" = 0 ] && chown postgres:postgres "$T/pg"
as_pg "$PGBIN/initdb" -D "$T/pg/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/log" -w -t 60 start \
  -o "-k $T/pg -p $PGPORT -c listen_addresses='' -c fsync=off -c max_connections=200" >/dev/null
psql() { command psql -h "$T/pg" -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
psql -d postgres -c "CREATE DATABASE edgeml"
STORE="Host=$T/pg;Port=$PGPORT;Username=postgres;Database=edgeml"

# Mosquitto as docs/scale.md's trial config.
MQTT=$(free_port)
mkdir -p "$T/mosquitto"; chmod 777 "$T/mosquitto"
{
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/mosquitto/\nmax_queued_messages 0\nmax_packet_size 2097152\n' "$MQTT" "$T"
  [ -n "$AUTOSAVE" ] && printf 'autosave_interval %s\n' "$AUTOSAVE"
  printf 'log_dest file %s/mosquitto/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n' "$T"
} > "$T/mosquitto.conf"
start_mosquitto() {
  /usr/sbin/mosquitto -c "$T/mosquitto.conf" >>"$T/mosquitto.out" 2>&1 &
  MOSQ_PID=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$MQTT) 2>/dev/null && return 0; sleep 0.1; done
  echo "mosquitto did not start" >&2; exit 2
}
start_mosquitto

# Hub replicas.
TOKEN="op_$(openssl rand -hex 24)"
HTTP=()
HUB_PIDS=()
for r in $(seq 1 "$REPLICAS"); do
  port=$(free_port); HTTP+=("$port")
  dotnet "$HUB" --Data "$T/hub-$r" --Store "$STORE" --Broker "mqtt://127.0.0.1:$MQTT" --SharedGroup edgeml-hub \
    --ClientId "hub-$r" --OperatorToken "$TOKEN" --urls "http://127.0.0.1:$port" >"$T/hub-$r.log" 2>&1 &
  PIDS+=($!); HUB_PIDS+=($!)
done
for r in $(seq 1 "$REPLICAS"); do
  for i in $(seq 600); do grep -q "Connected to external broker" "$T/hub-$r.log" && break; sleep 0.1; done
  grep -q "Connected to external broker" "$T/hub-$r.log" || { echo "replica $r did not connect:"; tail -20 "$T/hub-$r.log"; exit 2; }
done
log "PostgreSQL :$PGPORT, Mosquitto :$MQTT (pid $MOSQ_PID), $REPLICAS replica(s) connected"

# Devices.
AGENT_PIDS=()
for d in $(seq 1 "$AGENTS"); do
  mkdir -p "$T/agent-$d"
  (cd "$T/agent-$d" && exec "$AGENT" run --model "$MODEL" --sensor sim:vibration --count "$COUNT" --fast --quiet \
     --data "$T/agent-$d/data" --hub "mqtt://127.0.0.1:$MQTT" --device "agent-$d" >"$T/agent-$d/out" 2>"$T/agent-$d/err") &
  AGENT_PIDS+=($!); PIDS+=($!)
done
log "$AGENTS agent(s) sending $COUNT records each (--fast)"

stored_total() { psql -d edgeml -c "SELECT count(*) FROM records" 2>/dev/null || echo "?"; }
if [ "$STALL" -gt 0 ]; then
  sleep $((RESTART_AT > 1 ? RESTART_AT - 1 : 0))
  psql -d edgeml -c "BEGIN; LOCK TABLE records IN SHARE MODE; SELECT pg_sleep($((1 + DOWN + STALL))); COMMIT;" >/dev/null &
  PIDS+=($!)
  log "writes to records held back for $((1 + DOWN + STALL)) s"
  sleep 1
elif [ "$PAUSE" -gt 0 ]; then
  sleep $((RESTART_AT > PAUSE ? RESTART_AT - PAUSE : 0))
  for p in "${HUB_PIDS[@]}"; do kill -STOP "$p"; done
  log "replicas paused (SIGSTOP) for $PAUSE s before the broker stops"
  sleep "$PAUSE"
else
  sleep "$RESTART_AT"
fi
log "stored so far: $(stored_total); mosquitto gets SIG$SIG"
kill -"$SIG" "$MOSQ_PID"
wait "$MOSQ_PID" 2>/dev/null || true
MOSQ_PID=
log "mosquitto gone; stored: $(stored_total)"
sleep "$DOWN"
start_mosquitto
log "mosquitto back (pid $MOSQ_PID)"
if [ "$PAUSE" -gt 0 ]; then for p in "${HUB_PIDS[@]}"; do kill -CONT "$p"; done; log "replicas go on (SIGCONT)"; fi

for p in "${AGENT_PIDS[@]}"; do wait "$p" || log "agent pid $p exited with $?"; done
log "agents finished; stored: $(stored_total)"

# What each agent still holds (not acknowledged by the broker): sent again on its next start.
declare -A LEFT
for d in $(seq 1 "$AGENTS"); do
  LEFT[agent-$d]=$("$AGENT" status --data "$T/agent-$d/data" --json 2>/dev/null | python3 -c '
import json,sys
print(json.load(sys.stdin)["outbox"]["depth"]["telemetry"])' 2>/dev/null || echo "?")
done

# Wait until the store stops growing (the replicas drain what the broker queued for them).
prev=-1; same=0
for _ in $(seq 120); do
  now=$(stored_total)
  if [ "$now" = "$prev" ]; then same=$((same+1)); [ $same -ge 5 ] && break; else same=0; fi
  prev=$now; sleep 1
done
log "store settled at $now rows"

# Per device and class: rows, distinct (boot, seq), max seq (agents: one boot each, seq 1..N).
psql -d edgeml -F ' ' -c "SELECT device, class, count(*), count(DISTINCT (boot, seq)), count(DISTINCT boot), max(seq)
  FROM records GROUP BY 1, 2 ORDER BY 1, 2" > "$T/stored.txt"
echo
echo "device       class      rows  distinct  boots  max_seq"
awk '{printf "%-12s %-8s %7s %9s %6s %8s\n", $1, $2, $3, $4, $5, $6}' "$T/stored.txt"
echo
fail=0
for d in $(seq 1 "$AGENTS"); do
  dev=agent-$d
  read -r rows distinct maxseq < <(awk -v d="$dev" '$1==d && $2=="telemetry" {print $3, $4, $6}' "$T/stored.txt")
  rows=${rows:-0}; distinct=${distinct:-0}; maxseq=${maxseq:-0}
  left=${LEFT[$dev]}
  missing=$(( COUNT - distinct ))
  dup=$(( rows - distinct ))
  echo "$dev: produced $COUNT, left in outbox $left, stored $distinct distinct ($rows rows), missing $missing, duplicated $dup"
  if [ "$dup" -ne 0 ] || { [ "$left" != "?" ] && [ "$missing" -gt "$left" ]; }; then fail=1; fi
done
grep -h "could not be stored\|unreachable\|Took over\|taken over\|Error\|fail" "$T"/hub-*.log | sort | uniq -c | sort -rn | head -15 || true
exit $fail
