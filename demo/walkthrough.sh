#!/usr/bin/env bash
# `make demo`: the Conduktor Proxy chaos demo (../shared/seed/chaos-demo.md) against kaos, step by
# step, with the seed's own curl commands (only the host changes: conduktor-proxy:8888 becomes
# $ADMIN).
#
# With Java (and Apache Kafka's jars from `make kafka`), as the seed: a 3-node Apache Kafka
# cluster (tests/kafka/cluster.py), kaos in front of it, and the Kafka console tools (kafka-topics,
# kafka-producer-perf-test, kafka-console-consumer) talking to kaos only. Without Java
# (`command -v java` fails) or without the jars: a local tansu broker and a Python client
# (demo/kafka.py, confluent-kafka) in place of the console tools. DEMO_BROKER=kafka or tansu
# chooses. The schema-aware step runs demo/kafka.py in both cases: the seed's JSON Schema console
# tools and schema registry are Confluent's, not Apache Kafka's. Everything started here is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${KAOS_CACHE:=$HOME/.cache/kaos}"
: "${KAFKA_PORT:=9092}" "${PORT_START:=6969}" "${ADMIN:=127.0.0.1:8888}"
: "${KAFKA_LIBS:=$(ls -d "$KAOS_CACHE"/kafka-*/libs 2>/dev/null | tail -n 1)}"
TANSU="$KAOS_CACHE/tansu/bin/tansu"
PYTHON="$KAOS_CACHE/venv/bin/python"
BOOTSTRAP="127.0.0.1:$PORT_START"
if [ -z "${DEMO_BROKER:-}" ]; then
    if command -v java >/dev/null && [ -n "$KAFKA_LIBS" ] && [ -d "$KAFKA_LIBS" ]; then DEMO_BROKER=kafka; else DEMO_BROKER=tansu; fi
fi
case "$DEMO_BROKER" in
    kafka) command -v java >/dev/null || { echo "DEMO_BROKER=kafka needs java"; exit 1; }
           [ -d "${KAFKA_LIBS:-}" ] || { echo "no Kafka jars in '${KAFKA_LIBS:-}': run make kafka"; exit 1; } ;;
    tansu) [ -x "$TANSU" ] && [ -x "$PYTHON" ] || { echo "tansu or the venv is missing: run make deps"; exit 1; } ;;
    *) echo "DEMO_BROKER must be kafka or tansu"; exit 1 ;;
esac

step() { printf '\n\033[1m### %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }
client() { "$PYTHON" demo/kafka.py --bootstrap "$BOOTSTRAP" "$@"; }

kaos_pid= tansu_pid= cluster_dir=
cleanup() {
    local status=$?
    [ -z "$kaos_pid" ] || { kill "$kaos_pid" 2>/dev/null || true; wait "$kaos_pid" 2>/dev/null || true; }
    [ -z "$tansu_pid" ] || { kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true; }
    if [ -n "$cluster_dir" ]; then
        python3 tests/kafka/cluster.py stop --dir "$cluster_dir" || true
        if [ "$status" -eq 0 ]; then rm -rf "$cluster_dir"; else echo "Kafka cluster logs kept in $cluster_dir"; fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$DEMO_BROKER" = kafka ]; then
    cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/kaos-demo.XXXXXX")
    python3 tests/kafka/cluster.py start --dir "$cluster_dir" --libs "$KAFKA_LIBS" >/dev/null
    upstream=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["bootstrap"])' "$cluster_dir/cluster.json")
    # The seed's /clientConfig/proxy.properties: what every console tool reads to reach the proxy.
    PROPS="$cluster_dir/proxy.properties"
    printf 'bootstrap.servers=%s\nclient.id=kaos-demo\n' "$BOOTSTRAP" >"$PROPS"
else
    upstream="127.0.0.1:$KAFKA_PORT"
    "$TANSU" broker --listener-url "tcp://$upstream" --advertised-listener-url "tcp://$upstream" \
        --storage-engine memory://tansu/ >"$KAOS_CACHE/demo-tansu.log" 2>&1 &
    tansu_pid=$!
fi
target/release/kaos --bootstrap-servers "$upstream" --port-start "$PORT_START" --admin-addr "$ADMIN" \
    >"$KAOS_CACHE/demo-kaos.log" 2>&1 &
kaos_pid=$!
for _ in $(seq 100); do curl --silent --fail "$ADMIN/ready" >/dev/null && break; sleep 0.1; done
curl --silent --fail "$ADMIN/ready" >/dev/null || { echo "kaos did not become ready; see $KAOS_CACHE/demo-kaos.log"; exit 1; }
if [ "$DEMO_BROKER" = kafka ]; then
    echo "Apache Kafka (3 nodes) on $upstream; kaos on $BOOTSTRAP, admin API on $ADMIN (log in $KAOS_CACHE/demo-kaos.log)"
    echo "Clients: the Kafka console tools with $PROPS:"
    sed 's/^/    /' "$PROPS"
else
    echo "tansu on $upstream, kaos on $BOOTSTRAP, admin API on $ADMIN (logs in $KAOS_CACHE/demo-*.log)"
    echo "Clients: demo/kafka.py (confluent-kafka) in place of the Kafka console tools"
fi

# The seed's client commands, with the Kafka console tools (run with the cluster's jars by
# tests/kafka/cluster.py, each command shown first) or their stand-ins in demo/kafka.py.
tool() {
    show "$*"
    python3 tests/kafka/cluster.py tool --dir "$cluster_dir" "$@"
}
create_topic() {
    if [ "$DEMO_BROKER" = kafka ]; then
        tool kafka-topics --bootstrap-server "$BOOTSTRAP" --command-config "$PROPS" --create --if-not-exists --topic "$1"
    else
        client create-topic "$1"
    fi
}
list_topics() {
    if [ "$DEMO_BROKER" = kafka ]; then
        tool kafka-topics --bootstrap-server "$BOOTSTRAP" --command-config "$PROPS" --list
    else
        client list-topics
    fi
}
# perf_produce TOPIC RECORDS [PRODUCER PROPERTY...]: 100-byte records at 10 a second.
perf_produce() {
    local topic=$1 records=$2
    shift 2
    if [ "$DEMO_BROKER" = kafka ]; then
        tool kafka-producer-perf-test --producer.config "$PROPS" ${1:+--producer-props "$@"} \
            --record-size 100 --throughput 10 --num-records "$records" --topic "$topic"
    else
        client perf-produce "$topic" --record-size 100 --throughput 10 --num-records "$records"
    fi
}
# schema_round_trip TOPIC: one JSON Schema record produced and read back schema-aware.
schema_round_trip() {
    if [ -x "$PYTHON" ]; then
        client schema-round-trip "$1"
    else
        echo "(skipped: the schema-aware client needs the venv in $KAOS_CACHE/venv: make deps)"
    fi
}
# consume TOPIC: every record from the beginning; stops once nothing came for 5 s (the seed's
# consumer runs until Ctrl-C). The console consumer reports that stop as an error: not shown.
consume() {
    if [ "$DEMO_BROKER" = kafka ]; then
        tool kafka-console-consumer --bootstrap-server "$BOOTSTRAP" --consumer.config "$PROPS" \
            --from-beginning --topic "$1" --timeout-ms 5000 2>&1 |
            grep -a -v -e 'terminating consumer process' -e 'TimeoutException: null' || true
    else
        client consume "$1"
    fi
}

step "Step 3: create topics"
create_topic conduktor_topic
list_topics

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
perf_produce conduktor_topic 100

step "Step 6: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/broken-broker/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 7: run with no chaos"
perf_produce conduktor_topic 100

step "Step 8: Duplicate Writes"
create_topic conduktor_topic_duplicate
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
# The copy kaos sends is a second write only for a producer that is not idempotent: Kafka 4.1's
# producer is idempotent by default (the broker would drop the copy), so this one is not.
perf_produce conduktor_topic_duplicate 10 enable.idempotence=false
consume conduktor_topic_duplicate

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
perf_produce conduktor_topic 10

step "Step 13: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/leader-election/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 14: Random Bytes"
create_topic conduktor_topic_random
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
perf_produce conduktor_topic_random 10
consume conduktor_topic_random

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
perf_produce conduktor_topic 10

step "Step 19: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/slow-broker/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 20: Slow Topic"
create_topic conduktor_topic_slow
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
perf_produce conduktor_topic_slow 10
perf_produce conduktor_topic 10

step "Step 22: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/slow-topic/apiKeys/PRODUCE/direction/REQUEST"
echo

step "Step 23: Invalid Schema"
create_topic conduktor_topic_schema
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

# A JSON Schema producer and a schema-aware consumer (demo/kafka.py with confluent-kafka's in-process
# registry: the seed's kafka-json-schema-console-* tools and registry are Confluent's, not Kafka's).
step "Step 24: inject some chaos (expect the schema-aware consumer to fail on schema id 999)"
schema_round_trip conduktor_topic_schema

step "Step 25: reset"
curl \
    --silent \
    --request DELETE "$ADMIN/tenant/1-1/user/test@conduktor.io/feature/invalid-schema/apiKeys/PRODUCE/direction/REQUEST"
echo
schema_round_trip conduktor_topic_schema

step "Done: rules left"
curl --silent "$ADMIN/rules"
echo
