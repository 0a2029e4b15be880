#!/usr/bin/env bash
# Cross-check pcbench against wrk on http-small (1 KiB, keep-alive), directly
# on the origin and through share links of a running `pcd dev`.
#
#   make build && go build -o bin/pcbench ./cmd/pcbench
#   bench/crosscheck.sh            # DUR=10s CONNS=64 SHARES=200 ROUNDS=2 BIN=./bin
#
# Both tools run closed loop with the same connection count against the same
# processes, alternately, ROUNDS times. The edge limits each share link to
# 5,000 requests/min, so both rotate over SHARES links of the same service
# (wrk through a Lua script, pcbench through --target @file).
set -euo pipefail

BIN=${BIN:-./bin}
DUR=${DUR:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
SHARES=${SHARES:-200}
ROUNDS=${ROUNDS:-2}

for b in pcd connect pcbench; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: make build && go build -o $BIN/pcbench ./cmd/pcbench" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not found (apt-get install -y wrk)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port() { echo $((20000 + RANDOM % 10000)); }
api=127.0.0.1:$(port); http=127.0.0.1:$(port); tun=127.0.0.1:$(port); admin=127.0.0.1:$(port)
tcp=$((30000 + RANDOM % 5000))

"$BIN/pcbench" origin >"$work/origin.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do grep -q PCBENCH-ORIGIN "$work/origin.log" && break; sleep 0.05; done
origin=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$work/origin.log")

"$BIN/pcd" dev --data "$work/data" --listen "$api" --http "$http" --tunnel "$tun" --admin "$admin" \
  --tcp-ports "$tcp-$((tcp+9))" --log-format json --log-level warn >"$work/pcd.log" 2>&1 & pids+=($!)
for _ in $(seq 200); do [ -s "$work/data/admin.key" ] && break; sleep 0.05; done
export PC_API_KEY=$(cat "$work/data/admin.key") PC_CONTROL_URL=http://$api PC_STATE=$work/agent.json
sleep 0.5

"$BIN/connect" expose "$origin" --name bench --protocol http --log-level warn >"$work/agent.log" 2>&1 & pids+=($!)
for _ in $(seq 200); do grep -q -i connected "$work/agent.log" && break; sleep 0.05; done

: >"$work/urls.txt"
paths=()
for i in $(seq "$SHARES"); do
  u=$("$BIN/connect" link bench --expires 1h 2>/dev/null)
  echo "$u/small" >>"$work/urls.txt"
  paths+=("\"${u#http://$http}/small\"")
done
{
  echo "local paths = { $(IFS=,; echo "${paths[*]}") }"
  echo 'local i = 0'
  echo 'request = function() i = i + 1; return wrk.format("GET", paths[(i % #paths) + 1]) end'
} >"$work/rotate.lua"
sleep 0.5
curl -fsS -o /dev/null "$(head -1 "$work/urls.txt")"

echo "machine: $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -h | awk '/Mem:/{print $2}'), $(go version 2>/dev/null | cut -d' ' -f3)"
echo "origin $origin, edge $http, $SHARES share links, $CONNS connections, $DUR per run, wrk -t$THREADS"
for r in $(seq "$ROUNDS"); do
  echo "== round $r: direct"
  wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency "http://$origin/small" | grep -E 'Requests/sec|^ +50%|^ +99%|Non-2xx|Socket errors' || true
  "$BIN/pcbench" run -s http-small --target "http://$origin/small" --duration "$DUR" --connections "$CONNS" --quiet | grep -E '^http-small  '
  echo "== round $r: through the share links"
  wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency -s "$work/rotate.lua" "http://$http/" | grep -E 'Requests/sec|^ +50%|^ +99%|Non-2xx|Socket errors' || true
  "$BIN/pcbench" run -s http-small --target "@$work/urls.txt" --duration "$DUR" --connections "$CONNS" --quiet | grep -E '^http-small  '
done
