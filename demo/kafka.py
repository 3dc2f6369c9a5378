#!/usr/bin/env python3
"""The Kafka client side of `make demo`, standing in for the seed's Kafka console tools
(kafka-topics, kafka-producer-perf-test, kafka-console-consumer and the JSON Schema console
tools) with confluent-kafka, a librdkafka client: all of them where Java is missing (tansu), the
schema-aware step only where the walkthrough runs the Java tools against Apache Kafka."""

import argparse
import statistics
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMA = '{"title":"someSchema","type":"object","properties":{"some-valid":{"type":"string"}}}'


def create_topic(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    if args.topic in admin.list_topics(timeout=10).topics:
        print(f"topic {args.topic} exists")
        return
    admin.create_topics([NewTopic(args.topic, num_partitions=1, replication_factor=1)])[args.topic].result(timeout=10)
    print(f"created topic {args.topic}")


def list_topics(args):
    """Like kafka-topics --list."""
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for name in sorted(admin.list_topics(timeout=10).topics):
        if not name.startswith("__"):
            print(name)


def perf_produce(args):
    """Like kafka-producer-perf-test: fixed-size records at a fixed rate, then a latency summary."""
    latencies, errors = [], []
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 0, "acks": "all",
                         "message.timeout.ms": args.timeout_ms})

    def report(sent_at):
        def on_delivery(error, _message):
            latencies.append((time.monotonic() - sent_at) * 1000)
            if error is not None:
                errors.append(error)
                print(f"  error: {error.str()}")
        return on_delivery

    started = time.monotonic()
    for i in range(args.num_records):
        value = "".join(chr(65 + (i * 7 + j) % 26) for j in range(args.record_size))
        producer.produce(args.topic, value.encode(), on_delivery=report(time.monotonic()))
        # Serve delivery reports while pacing, so each latency is measured when it happens.
        next_send = started + (i + 1) / args.throughput
        while time.monotonic() < next_send:
            producer.poll(min(0.005, max(0.0, next_send - time.monotonic())))
    producer.flush(args.timeout_ms / 1000 + 5)
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    percentile = lambda p: ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0
    print(f"{args.num_records} records sent, {args.num_records / elapsed:.1f} records/sec, "
          f"{statistics.mean(latencies) if latencies else 0:.1f} ms avg latency, {max(latencies, default=0):.1f} ms max "
          f"latency, {percentile(0.5):.0f} ms 50th, {percentile(0.95):.0f} ms 95th; {len(errors)} failed deliveries")


def consume(args):
    """Like kafka-console-consumer --from-beginning: prints every value, stops when idle."""
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"demo-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
    consumer.subscribe([args.topic])
    count, idle_since = 0, time.monotonic()
    while time.monotonic() - idle_since < args.idle_seconds:
        message = consumer.poll(0.2)
        if message is None or message.error() is not None:
            continue
        idle_since = time.monotonic()
        count += 1
        print(message.value().decode(errors="replace"))
    consumer.close()
    print(f"Processed a total of {count} messages")


def schema_round_trip(args):
    """Produces one JSON Schema record and reads it back with a schema-aware deserializer.

    There is no schema registry server here, so the serializer and deserializer share
    confluent-kafka's in-process mock registry."""
    registry = SchemaRegistryClient.new_client({"url": "mock://demo"})
    context = SerializationContext(args.topic, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": args.bootstrap})
    producer.produce(args.topic, JSONSerializer(SCHEMA, registry)({"some-valid": "demo"}, context))
    producer.flush(10)
    deserialize = JSONDeserializer(None, schema_registry_client=registry)
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"demo-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
    consumer.subscribe([args.topic])
    deadline = time.monotonic() + 20
    last = None
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            last = message.value()
        elif last is not None:
            break
    consumer.close()
    if last is None:
        sys.exit("no record came back")
    schema_id = int.from_bytes(last[1:5], "big")
    try:
        print(f"schema id {schema_id}: {deserialize(last, context)}")
    except Exception as error:  # the point of the step: show the consumer's failure
        print(f"SerializationException: error retrieving JSON schema for id {schema_id}: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:6969")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("create-topic").add_argument("topic")
    sub.add_parser("list-topics")
    produce = sub.add_parser("perf-produce")
    produce.add_argument("topic")
    produce.add_argument("--record-size", type=int, default=100)
    produce.add_argument("--throughput", type=float, default=10)
    produce.add_argument("--num-records", type=int, default=100)
    produce.add_argument("--timeout-ms", type=int, default=60000)
    read = sub.add_parser("consume")
    read.add_argument("topic")
    read.add_argument("--idle-seconds", type=float, default=3)
    sub.add_parser("schema-round-trip").add_argument("topic")
    args = parser.parse_args()
    try:
        {"create-topic": create_topic, "list-topics": list_topics, "perf-produce": perf_produce, "consume": consume,
         "schema-round-trip": schema_round_trip}[args.command](args)
    except KafkaException as error:
        sys.exit(f"kafka error: {error}")


if __name__ == "__main__":
    main()
