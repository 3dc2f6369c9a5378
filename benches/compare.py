#!/usr/bin/env python3
"""`make bench`: librdkafka's rdkafka_performance straight to tansu and through kaos, in
alternating paired runs, reporting medians and the kaos / direct ratio.

Each run gets a fresh tansu (its memory engine keeps every record) and a fresh topic; kaos stays
up across runs, as it would in front of a real cluster. The machine is shared and noisy, so only
ratios from the same invocation mean anything.
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def ready(admin):
    try:
        with urllib.request.urlopen(f"http://{admin}/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def post_rule(admin, feature, body):
    request = urllib.request.Request(
        f"http://{admin}/tenant/bench/user/bench/feature/{feature}", data=json.dumps(body).encode(),
        method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def delete_all_rules(admin):
    with urllib.request.urlopen(f"http://{admin}/rules", timeout=5) as response:
        rules = json.loads(response.read())
    for rule in rules:
        path = (f"/tenant/{rule['tenant']}/user/{rule['user']}/feature/{rule['feature']}"
                f"/apiKeys/{rule['apiKeys']}/direction/{rule['direction']}")
        urllib.request.urlopen(urllib.request.Request(f"http://{admin}{path}", method="DELETE"), timeout=5).close()


def non_matching_rules(admin):
    """20 rules that match none of the benchmark's traffic, through each way a rule can miss:
    topics (Produce head peek, Fetch decode), brokers, and APIs the benchmark does not use."""
    for i in range(6):
        post_rule(admin, "slow-topic", {"config": {"topicPatterns": [f"nomatch-{i}-.*"],
                                                   "minLatencyToAddInMilliseconds": 1000},
                                        "direction": "REQUEST", "apiKeys": "PRODUCE"})
    for i in range(4):
        post_rule(admin, "random-bytes", {"config": {"topics": [f"absent-{i}"]},
                                          "direction": "REQUEST", "apiKeys": "PRODUCE"})
    for i in range(4):
        post_rule(admin, "slow-topic", {"config": {"topicPatterns": [f"nomatch-{i}-.*"],
                                                   "minLatencyToAddInMilliseconds": 1000},
                                        "direction": "RESPONSE", "apiKeys": "FETCH"})
    post_rule(admin, "broken-broker", {"config": {"brokerIds": [9999]}, "direction": "REQUEST", "apiKeys": "PRODUCE"})
    post_rule(admin, "leader-election", {"config": {"brokerIds": [9999]}, "direction": "REQUEST", "apiKeys": "FETCH"})
    for api in ["LIST_OFFSETS", "OFFSET_COMMIT", "JOIN_GROUP", "DELETE_TOPICS"]:
        post_rule(admin, "slow-broker", {"config": {"minLatencyToAddInMilliseconds": 1000},
                                         "direction": "REQUEST", "apiKeys": api})


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tansu:
    def __init__(self, binary, port):
        self.binary, self.port, self.process = binary, port, None

    def restart(self, advertised_port=None):
        """A fresh broker; `advertised_port` makes it tell clients to dial an L4 proxy instead."""
        self.stop()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or self.port}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("tansu", lambda: listening(self.port))

    def create_topic(self, topic, partitions):
        subprocess.run([self.binary, "topic", "create", topic, "--broker", f"tcp://127.0.0.1:{self.port}",
                        "--partitions", str(partitions)], check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Haproxy:
    """HAProxy in TCP mode: the L4 reference. It cannot rewrite addresses, so the broker
    advertises HAProxy's port while HAProxy is measured."""

    def __init__(self, broker_port):
        self.port = free_port()
        self.config = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
        self.config.write(f"""global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend kafka
    bind 127.0.0.1:{self.port}
    default_backend broker
backend broker
    server tansu 127.0.0.1:{broker_port}
""")
        self.config.close()
        self.process = subprocess.Popen(["haproxy", "-db", "-f", self.config.name],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("haproxy", lambda: listening(self.port))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        os.unlink(self.config.name)


def run_perf(perf, args, pattern):
    result = subprocess.run([perf, *args], capture_output=True, text=True, timeout=180)
    # The last summary line is the final one (the consumer prints an empty one first).
    rates = re.findall(pattern, result.stdout + result.stderr)
    if result.returncode != 0 or not rates or float(rates[-1]) == 0:
        sys.exit(f"rdkafka_performance {' '.join(args)} printed no rate:\n{result.stdout}\n{result.stderr}")
    return float(rates[-1])


def paired(tansu, perf, pairs, sides, produce_flags, consume_flags, on_run=None):
    """Alternating paired runs of each side; returns {(side, load): [rates]}."""
    results = {(side, load): [] for side in sides for load in ("produce", "consume")}
    for pair in range(pairs):
        order = list(sides) if pair % 2 == 0 else list(reversed(sides))
        for side in order:
            bootstrap, prepare, advertised_port = sides[side]
            tansu.restart(advertised_port)
            tansu.create_topic("bench", 1)
            prepare()
            flags = ["-t", "bench", "-b", bootstrap]
            measure = on_run(side) if on_run else None
            produced = run_perf(perf, produce_flags + flags, r"in \d+ms: (\d+) msgs/s")
            consumed = run_perf(perf, consume_flags + flags, r"consumed in \d+ms: (\d+) msgs/s")
            if measure:
                measure()
            results[(side, "produce")].append(produced)
            results[(side, "consume")].append(consumed)
            print(f"pair {pair + 1}/{pairs} {side:14} produce {produced:>12,.0f} msg/s"
                  f"   consume {consumed:>12,.0f} msg/s", flush=True)
    return results


def table(results, base, other, pairs, records, size):
    print(f"\n{other} / {base}: {pairs} alternating pairs, {records:,} records of {size} bytes, 1 partition\n")
    print(f"| workload | {base} median msg/s | {other} median msg/s | {other} / {base} (median) | per-pair ratio min-max |")
    print("|---|---|---|---|---|")
    for load in ("produce", "consume"):
        first, second = results[(base, load)], results[(other, load)]
        ratios = [b / a for a, b in zip(first, second)]
        print(f"| {load} | {statistics.median(first):,.0f} | {statistics.median(second):,.0f} "
              f"| {statistics.median(second) / statistics.median(first):.3f} "
              f"| {min(ratios):.3f}-{max(ratios):.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kaos", required=True)
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--perf", required=True, help="path to rdkafka_performance")
    parser.add_argument("--pairs", type=int, default=11)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--shards", type=int, default=0, help="kaos shards (0: kaos's default)")
    parser.add_argument("--suites", default="direct,rules,haproxy",
                        help="comma-separated: direct (kaos vs direct), rules (20 non-matching rules vs none), "
                        "haproxy (kaos vs HAProxy in TCP mode)")
    args = parser.parse_args()

    tansu = Tansu(args.tansu, free_port())
    port_start, admin = free_port(), f"127.0.0.1:{free_port()}"
    kaos_args = [args.kaos, "--bootstrap-servers", f"127.0.0.1:{tansu.port}", "--port-start", str(port_start),
                 "--admin-addr", admin, "--log-level", "warn"]
    if args.shards:
        kaos_args += ["--shards", str(args.shards)]
    tansu.restart()
    kaos = subprocess.Popen(kaos_args, stderr=subprocess.DEVNULL)
    direct, proxied = f"127.0.0.1:{tansu.port}", f"127.0.0.1:{port_start}"
    produce_flags = ["-P", "-s", str(args.size), "-c", str(args.records), "-X", "acks=all", "-X", "linger.ms=5"]
    consume_flags = ["-C", "-p", "0", "-o", "beginning", "-c", str(args.records), "-X", "fetch.wait.max.ms=10"]
    suites = args.suites.split(",")
    cpu = {"seconds": 0.0, "bytes": 0}

    def kaos_ready():
        wait_for("kaos to see tansu", lambda: ready(admin))

    def count_cpu(side):
        if side != "kaos":
            return None
        before = cpu_seconds(kaos.pid)

        def after():
            cpu["seconds"] += cpu_seconds(kaos.pid) - before
            cpu["bytes"] += 2 * args.records * args.size
        return after

    try:
        wait_for("kaos", lambda: ready(admin))
        if "direct" in suites:
            sides = {"direct": (direct, lambda: None, None), "kaos": (proxied, kaos_ready, None)}
            results = paired(tansu, args.perf, args.pairs, sides, produce_flags, consume_flags, count_cpu)
            table(results, "direct", "kaos", args.pairs, args.records, args.size)
            if cpu["bytes"]:
                print(f"\nkaos CPU: {cpu['seconds'] / (cpu['bytes'] / 1e9):.2f} CPU-seconds per GB of record "
                      "payload forwarded")
        if "rules" in suites:
            def no_rules():
                delete_all_rules(admin)
                kaos_ready()

            def with_rules():
                delete_all_rules(admin)
                non_matching_rules(admin)
                kaos_ready()
            sides = {"no rules": (proxied, no_rules, None), "20 rules": (proxied, with_rules, None)}
            results = paired(tansu, args.perf, args.pairs, sides, produce_flags, consume_flags)
            table(results, "no rules", "20 rules", args.pairs, args.records, args.size)
        if "haproxy" in suites:
            haproxy = Haproxy(tansu.port)
            try:
                sides = {"haproxy": (f"127.0.0.1:{haproxy.port}", lambda: None, haproxy.port),
                         "kaos": (proxied, kaos_ready, None)}
                results = paired(tansu, args.perf, args.pairs, sides, produce_flags, consume_flags)
                table(results, "haproxy", "kaos", args.pairs, args.records, args.size)
            finally:
                haproxy.stop()
    finally:
        kaos.send_signal(signal.SIGTERM)
        kaos.wait(timeout=30)
        tansu.stop()


if __name__ == "__main__":
    main()
