#!/usr/bin/env bash
# The fleet on this machine: three `quintet serve` replicas (all five
# services: messages, counters and kv on PostgreSQL, calc events on a NATS
# JetStream server of its own, receipts on SQS + DynamoDB served by moto)
# behind nginx (HTTP/1.1, gRPC, and kv's raw TCP through its stream module),
# a mixed load on every service through
# nginx, one replica killed with SIGKILL mid-load and restarted 2 s later,
# and 1,000 receipts jobs worked by the three while it dies. The test
# (crates/quintet/tests/fleet) asserts that nothing acknowledged was lost;
# this script runs it and writes its table of figures to FLEET.md.
#
#   bash bench/fleet.sh            # debug build, as CI runs it (~2 min once built)
#   PROFILE=release bash bench/fleet.sh
#
# Needs what scripts/test installs: PostgreSQL on 127.0.0.1:5432, nats-server,
# moto_server and nginx.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-debug}"
profile_flag=()
[ "$PROFILE" = release ] && profile_flag=(--release)

report=$(mktemp)
trap 'rm -f "$report"' EXIT
command=(cargo test --locked "${profile_flag[@]}" -p quintet --test fleet -- --nocapture)
QUINTET_FLEET_REPORT="$report" "${command[@]}"

{
  echo "# The fleet: a replica killed under load"
  echo
  echo "Written by \`bash bench/fleet.sh\` (\`PROFILE=$PROFILE\`) on $(date -u +%Y-%m-%d),"
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)."
  echo "Command: \`QUINTET_FLEET_REPORT=FLEET.md ${command[*]}\`."
  echo
  echo "Three replicas of \`quintet serve\` (all five services; messages, counters"
  echo "and kv on one PostgreSQL schema, calc events on NATS JetStream, receipts on"
  echo "one SQS queue and one DynamoDB ledger on moto) behind nginx (HTTP/1.1,"
  echo "gRPC, and kv's raw-TCP protocol through the stream module; \`max_fails=1"
  echo "fail_timeout=2s\`, \`proxy_next_upstream error timeout\`). The load runs"
  echo "3 tasks per service through nginx (kv: 3 over gRPC and one over raw TCP,"
  echo "many sets per connection, a new connection after a failure); replica 1 is killed with"
  echo "SIGKILL 6 s in and restarted 2 s later; 1,000 receipts jobs are submitted"
  echo "through nginx meanwhile. Every figure below is asserted by the test as"
  echo "described in crates/quintet/tests/fleet/main.rs; a failed assertion fails"
  echo "the run and writes nothing."
  echo
  cat "$report"
  echo
  echo "What the figures mean:"
  echo
  echo "- *errors the load saw*: requests in flight on the killed replica (or sent"
  echo "  to it before nginx marked it failed) that nginx could not retry — a POST"
  echo "  whose connection was already established is not retried, by design, as it"
  echo "  may have been applied. Those are the only errors, all within 3 s of the kill."
  echo "- *counters: total in PostgreSQL − acknowledged*: increments of requests that"
  echo "  failed at the kill but had been counted; the test asserts"
  echo "  0 ≤ difference ≤ failed counter requests (no double counting)."
  echo "- *calc Adds answered but missing*: the replicas run with"
  echo "  \`--calc-event-ack appended\`, so calc answers only once the event is in"
  echo "  NATS JetStream; the test asserts none is missing. A caller that retries an"
  echo "  Add whose answer the kill cut off records it twice: the *in the history"
  echo "  twice* row counts those (at-least-once)."
  echo "- *receipts jobs with more than one result*: jobs the killed worker had"
  echo "  received but not deleted, redelivered after SQS's visibility timeout (5 s);"
  echo "  the ledger claimed each transaction once, so a redelivered job answers"
  echo "  the same result."
} > FLEET.md
echo "bench/fleet.sh: wrote FLEET.md"
