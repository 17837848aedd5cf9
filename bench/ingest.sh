#!/usr/bin/env bash
# Measures durable ingest against a bare axum handler, time to ready, and
# resident memory idle and under load. Everything listens on 127.0.0.1 and
# each load run is bounded by DURATION.
#
# Usage: bench/ingest.sh [DURATION] [CONNECTIONS]   (needs wrk: apt-get install wrk)
# KEEP_LOG=FILE keeps the bridge's log of the run.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
connections=${2:-32}
baseline_port=18181
sink_port=18182
bridge_port=18180

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release --bins --examples --quiet

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -n "${keep_log:-}" ]] && cp "$work/bridge.log" "$keep_log"
  rm -rf "$work"
}
trap cleanup EXIT
keep_log=${KEEP_LOG:-}

wait_for() {
  for _ in $(seq 1 500); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.01
  done
  echo "timed out waiting for $1" >&2
  return 1
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
requests_per_second() { awk '/^Requests\/sec/ {print $2}'; }

# Baseline: the bare handler responding with 202.
target/release/examples/bare_handler "127.0.0.1:$baseline_port" 2>/dev/null &
pids+=($!)
sleep 0.3
baseline=$(wrk -t2 -c"$connections" -d"$duration" -s bench/unique_events.lua \
  "http://127.0.0.1:$baseline_port" | requests_per_second)

# A second bare handler receives the bridge's webhook deliveries.
target/release/examples/bare_handler "127.0.0.1:$sink_port" 2>/dev/null &
pids+=($!)

cat > "$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$bridge_port"
[store]
url = "sqlite://$work/bench.db"
[templates]
dir = "$PWD/templates"
[[secrets]]
environment = "bench"
value = "bench-secret"
[destinations.sink]
kind = "webhook"
url = "http://127.0.0.1:$sink_port/hook"
[[routes]]
name = "joins"
when = { eventType = "joinSpace" }
template = "generic"
to = ["sink"]
TOML

started=$(date +%s%N)
RUST_LOG=warn target/release/pencil-bridge serve --config "$work/config.toml" 2>"$work/bridge.log" &
bridge=$!
pids+=($bridge)
wait_for "http://127.0.0.1:$bridge_port/readyz"
ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
sleep 1
idle_kib=$(rss_kib "$bridge")

bridge_rps=$(wrk -t2 -c"$connections" -d"$duration" -s bench/unique_events.lua \
  "http://127.0.0.1:$bridge_port" | requests_per_second)
load_peak_kib=$(peak_kib "$bridge")

# Wait for the queue to drain, bounded at 120 s.
for _ in $(seq 1 1200); do
  depth=$(curl -fs "http://127.0.0.1:$bridge_port/metrics" | awk '/^pencil_bridge_queue_depth/ {print $2}')
  [[ "$depth" == "0" ]] && break
  sleep 0.1
done
delivered=$(curl -fs "http://127.0.0.1:$bridge_port/metrics" \
  | awk '/^pencil_bridge_deliveries_total\{.*outcome="delivered"/ {print $2}')

ratio=$(awk -v a="$bridge_rps" -v b="$baseline" 'BEGIN {printf "%.2f", a / b}')
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t2 -c$connections -d$duration"
echo "bare handler:        $baseline requests/s"
echo "bridge ingest:       $bridge_rps requests/s (ratio $ratio)"
echo "ready after start:   $ready_ms ms"
echo "memory idle:         $((idle_kib / 1024)) MiB RSS"
echo "memory under load:   $((load_peak_kib / 1024)) MiB peak RSS"
echo "delivered to sink:   $delivered (queue depth ${depth:-?})"
