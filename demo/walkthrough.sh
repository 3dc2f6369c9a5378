#!/usr/bin/env bash
# `make demo`: the Conduktor Proxy chaos demo (../shared/seed/chaos-demo.md) against kaos.
# It starts a local tansu broker and kaos, then runs each step of the seed with the seed's own
# curl commands (only the host changes: conduktor-proxy:8888 becomes $ADMIN) and a real Kafka
# client in place of the Kafka console tools. Both processes are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${KAOS_CACHE:=$HOME/.cache/kaos}"
: "${KAFKA_PORT:=9092}" "${PORT_START:=6969}" "${ADMIN:=127.0.0.1:8888}"
TANSU="$KAOS_CACHE/tansu/bin/tansu"
PYTHON="$KAOS_CACHE/venv/bin/python"
BOOTSTRAP="127.0.0.1:$PORT_START"
client() { "$PYTHON" demo/kafka.py --bootstrap "$BOOTSTRAP" "$@"; }
step() { printf '\n\033[1m### %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

"$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$KAOS_CACHE/demo-tansu.log" 2>&1 &
tansu_pid=$!
target/release/kaos --bootstrap-servers "127.0.0.1:$KAFKA_PORT" --port-start "$PORT_START" --admin-addr "$ADMIN" \
    >"$KAOS_CACHE/demo-kaos.log" 2>&1 &
kaos_pid=$!
trap 'kill $kaos_pid $tansu_pid 2>/dev/null; wait $kaos_pid $tansu_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl --silent --fail "$ADMIN/ready" >/dev/null && break; sleep 0.1; done
curl --silent --fail "$ADMIN/ready" >/dev/null || { echo "kaos did not become ready; see $KAOS_CACHE/demo-kaos.log"; exit 1; }
echo "tansu on 127.0.0.1:$KAFKA_PORT, kaos on $BOOTSTRAP, admin API on $ADMIN (logs in $KAOS_CACHE/demo-*.log)"

step "Step 3: create topics"
client create-topic conduktor_topic

step "Step 4: Broken Broker"
show 'curl --request POST "'"$ADMIN"'/tenant/1-1/user/test@conduktor.io/feature/broken-broker" ...'
curl \
    --silent \
    --request POST "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/broken-broker" \
    --header 'Content-Type: application/json' \
    --data-raw '{
        "config": {
	        "brokerIds": [],
	        "duration": 6000,
	        "durationUnit": "MILLISECONDS",
	        "quietPeriod": 20000,
	        "quietPeriodUnit": "MILLISECONDS",
	        "minLatencyToAddInMilliseconds": 6000,
	        "maxLatencyToAddInMilliseconds": 7000,
	        "errors": ["REQUEST_TIMED_OUT", "BROKER_NOT_AVAILABLE", "OFFSET_OUT_OF_RANGE", "NOT_ENOUGH_REPLICAS", "INVALID_REQUIRED_ACKS"]
        },
        "direction": "REQUEST",
        "apiKeys": "PRODUCE"
    }'
echo

step "Step 5: inject some chaos (expect errors and ~6 s latencies)"
client perf-produce conduktor_topic --record-size 100 --throughput 10 --num-records 20

step "Step 6: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/broken-broker/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 7: run with no chaos"
client perf-produce conduktor_topic --record-size 100 --throughput 10 --num-records 20

step "Step 8: Duplicate Writes"
client create-topic conduktor_topic_duplicate
curl \
    --silent \
    --request POST "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/duplicate-resource" \
    --header 'Content-Type: application/json' \
    --data-raw '{
        "config": { 
          "topics": ["conduktor_topic_duplicate"], 
          "duration": 1, 
          "rateInPercent": 100, 
          "quietPeriod": 1, 
          "timeUnit": "MINUTES" 
        },
        "direction": "REQUEST",
        "apiKeys": "PRODUCE"
    }'
echo

step "Step 9: inject some chaos (expect every record twice)"
client perf-produce conduktor_topic_duplicate --record-size 100 --throughput 10 --num-records 10
client consume conduktor_topic_duplicate

step "Step 10: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/duplicate-resource/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 11: Leader Election"
curl \
    --silent \
    --request POST "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/leader-election" \
    --header 'Content-Type: application/json' \
    --data-raw '{
        "config": {
          "rateInPercent": 100,
          "duration":6000, 
          "quietPeriod":20000,
          "timeUnit":"MILLISECONDS",
          "errors":["LEADER_NOT_AVAILABLE","NOT_LEADER_OR_FOLLOWER","BROKER_NOT_AVAILABLE"]
        },
        "direction": "REQUEST",
        "apiKeys": "PRODUCE"
    }'
echo

step "Step 12: inject some chaos (expect retries until the 6 s election is over)"
client perf-produce conduktor_topic --record-size 100 --throughput 10 --num-records 10

step "Step 13: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/leader-election/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 14: Random Bytes"
client create-topic conduktor_topic_random
curl \
    --silent \
    --request POST "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/random-bytes" \
    --header 'Content-Type: application/json' \
    --data-raw '{
        "config": { 
          "topics": ["conduktor_topic_random"], 
          "nbMessages": 1, 
          "sizeInBytes": 10 
        },
        "direction": "REQUEST",
        "apiKeys": "PRODUCE"
    }'
echo

step "Step 15: inject some chaos (expect 10 random bytes at the end of each record)"
client perf-produce conduktor_topic_random --record-size 100 --throughput 10 --num-records 10
client consume conduktor_topic_random

step "Step 16: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/random-bytes/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 17: Slow Broker"
curl \
    --silent \
    --request POST "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/slow-broker" \
    --header 'Content-Type: application/json' \
    --data-raw '{
        "config": {
          "brokerIds":[],
          "duration":6000,
          "durationUnit":"MILLISECONDS",
          "quietPeriod":20000,
          "quietPeriodUnit":"MILLISECONDS",
          "minLatencyToAddInMilliseconds":6000,
          "maxLatencyToAddInMilliseconds":7000
        },
        "direction": "REQUEST",
        "apiKeys": "PRODUCE"
    }'
echo

step "Step 18: inject some chaos (expect ~6-7 s latencies)"
client perf-produce conduktor_topic --record-size 100 --throughput 10 --num-records 10

step "Step 19: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/slow-broker/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 20: Slow Topic"
client create-topic conduktor_topic_slow
curl \
    --silent \
    --request POST "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/slow-topic" \
    --header 'Content-Type: application/json' \
    --data-raw '{
        "config": {
          "topicPatterns":["conduktor_topic_slow"],
          "duration":6000,
          "durationUnit":"MILLISECONDS",
          "quietPeriod":20000,
          "quietPeriodUnit":"MILLISECONDS",
          "minLatencyToAddInMilliseconds":6000,
          "maxLatencyToAddInMilliseconds":7000
        },
        "direction": "REQUEST",
        "apiKeys": "PRODUCE"
    }'
echo

step "Step 21: inject some chaos (expect ~6-7 s latencies on conduktor_topic_slow only)"
client perf-produce conduktor_topic_slow --record-size 100 --throughput 10 --num-records 10
client perf-produce conduktor_topic --record-size 100 --throughput 10 --num-records 10

step "Step 22: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/slow-topic/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 23: Invalid Schema"
client create-topic conduktor_topic_schema
curl \
    --silent \
    --request POST "$ADMIN/tenant" \
    --header 'Content-Type: application/json' \
    --data-raw '{
        "tenant": "1-1",
        "topic": "conduktor_topic_schema",
        "messageFormat": "JSON"
    }'
echo
curl \
    --silent \
    --request POST "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/invalid-schema" \
    --header 'Content-Type: application/json' \
    --data-raw '{
        "config": { 
          "topics": ["conduktor_topic_schema"], 
          "fakeSchemaId": 999 
        },
        "direction": "REQUEST",
        "apiKeys": "PRODUCE"
    }'
echo

step "Step 24: inject some chaos (expect the schema-aware consumer to fail on schema id 999)"
client schema-round-trip conduktor_topic_schema

step "Step 25: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/invalid-schema/apiKeys/PRODUCE/direction/REQUEST"
echo
client schema-round-trip conduktor_topic_schema

step "Done: rules left"
curl --silent "$ADMIN/rules"
echo
