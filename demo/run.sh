#!/usr/bin/env bash
# `make run`: a local broker and kaos in front of it, until Ctrl-C, which stops both (exit 0).
#
# With Java and Apache Kafka's jars (`make kafka`, the ones the tests use): a one-node Apache
# Kafka (tests/kafka/cluster.py, KRaft, about 13 s to start). Without Java: tansu
# ($KAOS_CACHE/tansu/bin/tansu, built by `make deps`). RUN_BROKER=kafka or tansu chooses.
# The broker listens on 127.0.0.1:$KAFKA_PORT, kaos on 127.0.0.1:$PORT_START (its admin API and
# console on $ADMIN); kaos serves broker N on PORT_START + 1 + N.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${KAOS_CACHE:=$HOME/.cache/kaos}"
: "${KAOS:=target/release/kaos}"
: "${KAFKA_PORT:=9092}" "${PORT_START:=6969}" "${ADMIN:=127.0.0.1:8888}"
: "${KAFKA_LIBS:=$(ls -d "$KAOS_CACHE"/kafka-*/libs 2>/dev/null | tail -n 1)}"
TANSU="$KAOS_CACHE/tansu/bin/tansu"
if [ -z "${RUN_BROKER:-}" ]; then
    if command -v java >/dev/null && [ -d "${KAFKA_LIBS:-}" ]; then RUN_BROKER=kafka; else RUN_BROKER=tansu; fi
fi

kaos_pid= tansu_pid= cluster_dir=
cleanup() {
    [ -z "$kaos_pid" ] || { kill "$kaos_pid" 2>/dev/null || true; wait "$kaos_pid" 2>/dev/null || true; }
    [ -z "$tansu_pid" ] || { kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true; }
    if [ -n "$cluster_dir" ]; then
        python3 tests/kafka/cluster.py stop --dir "$cluster_dir" >/dev/null 2>&1 || true
        rm -rf "$cluster_dir"
    fi
}
trap cleanup EXIT
# Ctrl-C is how `make run` is meant to end: stop everything, exit 0.
trap 'echo; echo "stopping kaos and the broker"; exit 0' INT TERM

case "$RUN_BROKER" in
    kafka)
        cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/kaos-run.XXXXXX")
        echo "starting a one-node Apache Kafka ($(basename "$(dirname "$KAFKA_LIBS")")) on 127.0.0.1:$KAFKA_PORT"
        python3 tests/kafka/cluster.py start --dir "$cluster_dir" --nodes 1 --no-tls \
            --client-port "$KAFKA_PORT" --libs "$KAFKA_LIBS" >/dev/null
        broker_log="$cluster_dir/node-1/server.log" ;;
    tansu)
        [ -x "$TANSU" ] || { echo "no java and no tansu: install Java 17+ (and run make kafka) or run make deps"; exit 1; }
        broker_log="$KAOS_CACHE/tansu-run.log"
        "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
            >"$broker_log" 2>&1 &
        tansu_pid=$!
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break
            kill -0 "$tansu_pid" 2>/dev/null || { cat "$broker_log"; exit 1; }
            sleep 0.1
        done ;;
    *) echo "RUN_BROKER must be kafka or tansu"; exit 1 ;;
esac

# On a terminal, kaos runs as its foreground job (job control), so that Ctrl-C reaches kaos alone:
# kaos drains and exits 0, this script stops the broker, and make, which never saw the signal,
# exits 0 too (a make interrupted by Ctrl-C exits 130, whatever its recipe does).
interactive=
if [ -t 0 ] && [ -t 1 ]; then interactive=1; set -m; fi
"$KAOS" --bootstrap-servers "127.0.0.1:$KAFKA_PORT" --port-start "$PORT_START" --admin-addr "$ADMIN" &
kaos_pid=$!
for _ in $(seq 200); do
    curl -fsS "http://$ADMIN/ready" >/dev/null 2>&1 && break
    kill -0 "$kaos_pid" 2>/dev/null || { kaos_pid=; echo "kaos exited; see above"; exit 1; }
    sleep 0.1
done
cat <<INFO

  broker ($RUN_BROKER)   127.0.0.1:$KAFKA_PORT   (log: $broker_log)
  kaos bootstrap   127.0.0.1:$PORT_START   (clients: bootstrap.servers=127.0.0.1:$PORT_START)
  kaos brokers     127.0.0.1:$((PORT_START + 1))+N for broker N
  admin API        http://$ADMIN/   (web console; /health, /ready, /metrics)

  Ctrl-C stops kaos and the broker.

INFO
status=0
if [ -n "$interactive" ]; then
    fg %% >/dev/null || status=$?
else
    wait "$kaos_pid" || status=$?
fi
kaos_pid=
echo "kaos stopped; stopping the broker"
exit "$status"
