#!/usr/bin/env python3
"""`make bench`: kaos against a direct connection, tansu's own proxy and HAProxy (TCP mode), in
paired, alternating runs, on a real tansu broker with librdkafka clients.

Suites (all by default; choose with --suites):
  throughput   rdkafka_performance produce (acks=all, linger.ms=5) and consume
               (fetch.wait.max.ms=10), 100 B and 1 KB records, 1 and 3 partitions, through every
               target; kaos's and HAProxy's CPU seconds per GB from /proc.
  latency      one request in flight (linger.ms=0, acks=1): round-trip p50/p99/p99.9.
  connections  1, 8 and 64 producer connections sending flat out.
  rules        no rules, 20 rules that match nothing, 20 matching rules at rate 0%, 20 rules
               scoped to other client ids.
  chaos        random-bytes and invalid-schema at 100% of produce traffic vs pass-through.
  memory       resident memory of kaos and HAProxy per client connection, with 1, 1,000 and 5,000
               connections open (each did one Metadata round trip), and after 2,000 connections
               were opened and closed twice.
  tls          TLS on both sides: kaos TLS-to-TLS against a direct TLS connection (stunnel in
               front of tansu), produce and consume, 100 B and 1 KB records.
  kafka        kaos in front of a 3-node Apache Kafka cluster (tests/kafka/cluster.py) against a
               direct connection, with Kafka's own Java tools: kafka-producer-perf-test (acks=all)
               and kafka-consumer-perf-test, 100-byte records, a 3-partition topic (replication 3)
               per run. Skipped without `java`.
  latency-fault  (with --toxiproxy) a producer under 100 ms of added latency on every answer:
               kaos's slow-broker (RESPONSE, the network model) against Toxiproxy 2.12's latency
               toxic (downstream), rdkafka_performance with acks=all and 5 requests in flight,
               plus the same producer direct without any latency for scale.
  baseline     (with --baseline-kaos) this kaos against another build of kaos, pass-through:
               throughput (100 B and 1 KB, 1 partition) and round-trip latency, so a change can
               show it costs nothing (`make bench-baseline BASELINE=<commit>`).

Each run gets a fresh tansu (its memory engine keeps every record) and fresh topics; the kafka
suite starts its cluster once and gives each run a fresh topic. The machines are shared and noisy:
only ratios from one invocation mean anything.
"""

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
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


def resident_bytes(pid):
    """VmRSS of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        kib = next(line for line in f if line.startswith("VmRSS:")).split()[1]
    return int(kib) * 1024


def metadata_request(correlation_id):
    """Metadata v1 asking for brokers only (an empty topic list), as a length-prefixed frame."""
    client_id = b"kaos-bench-memory"
    body = (struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
            + struct.pack(">i", 0))
    return struct.pack(">i", len(body)) + body


def open_connections(port, count):
    """`count` connections to `port`, each with one Metadata round trip done; left open."""
    connections = []
    for index in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        connection.sendall(metadata_request(index))
        length = struct.unpack(">i", receive_exactly(connection, 4))[0]
        receive_exactly(connection, length)
        connections.append(connection)
    return connections


def receive_exactly(connection, size):
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed before answering Metadata")
        data += chunk
    return data


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tansu:
    def __init__(self, binary):
        self.binary, self.port, self.process = binary, free_port(), None

    def restart(self, advertised_port=None):
        """A fresh broker; `advertised_port` makes it tell clients to dial an L4 proxy instead."""
        self.stop()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or self.port}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("tansu", lambda: listening(self.port))

    def create_topic(self, topic, partitions):
        subprocess.run([self.binary, "topic", "create", topic, "--broker", f"tcp://127.0.0.1:{self.port}",
                        "--partitions", str(partitions)], check=True, stdout=subprocess.DEVNULL, timeout=30)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Kaos:
    def __init__(self, binary, broker_port, extra=()):
        """`broker_port`: a local broker's port, or bootstrap servers as HOST:PORT,..."""
        self.port, self.admin = free_port(), f"127.0.0.1:{free_port()}"
        servers = broker_port if isinstance(broker_port, str) else f"127.0.0.1:{broker_port}"
        self.process = subprocess.Popen(
            [binary, "--bootstrap-servers", servers, "--port-start", str(self.port),
             "--admin-addr", self.admin, "--log-level", "warn", *extra], stderr=subprocess.DEVNULL)
        self.pid = self.process.pid

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://{self.admin}/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def prepare(self):
        wait_for("kaos to see tansu", self.ready)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{self.admin}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def add_rule(self, feature, config, api="PRODUCE", direction="REQUEST"):
        self.call("POST", f"/tenant/bench/user/bench/feature/{feature}",
                  {"config": config, "apiKeys": api, "direction": direction})

    def clear_rules(self):
        for rule in self.call("GET", "/rules"):
            self.call("DELETE", f"/tenant/{rule['tenant']}/user/{rule['user']}/feature/{rule['feature']}"
                                f"/apiKeys/{rule['apiKeys']}/direction/{rule['direction']}")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


class Haproxy:
    """HAProxy in TCP mode: the L4 reference. It cannot rewrite addresses, so the broker
    advertises HAProxy's port while HAProxy is measured."""

    def __init__(self, broker_port):
        self.port = free_port()
        self.config = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
        self.config.write(f"global\n    maxconn 6000\ndefaults\n    mode tcp\n    timeout connect 5s\n"
                          f"    timeout client 120s\n    timeout server 120s\nfrontend kafka\n"
                          f"    bind 127.0.0.1:{self.port}\n    default_backend broker\nbackend broker\n"
                          f"    server tansu 127.0.0.1:{broker_port}\n")
        self.config.close()
        self.process = subprocess.Popen(["haproxy", "-db", "-f", self.config.name],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        wait_for("haproxy", lambda: listening(self.port))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        os.unlink(self.config.name)


class TansuProxy:
    """tansu's own pass-through proxy: the closest Rust peer. It does not survive a restart of
    its origin broker, so it is restarted with every fresh broker it is measured against."""

    def __init__(self, binary, broker_port):
        self.binary, self.broker_port, self.port, self.process = binary, broker_port, free_port(), None
        self.restart()

    def restart(self):
        self.stop()
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.binary, "proxy", "--listener-url", url, "--advertised-listener-url", url,
             "--origin-url", f"tcp://127.0.0.1:{self.broker_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("tansu proxy", lambda: listening(self.port))

    @property
    def pid(self):
        return self.process.pid

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Toxiproxy:
    """Toxiproxy (Shopify's, in Go) with one proxy in front of the broker and a latency toxic on
    everything the broker sends back: the L4 reference for latency faults. Like HAProxy it cannot
    rewrite addresses, so the broker advertises its port while it is measured."""

    def __init__(self, binary, broker_port, latency_ms):
        self.api, self.port = free_port(), free_port()
        self.process = subprocess.Popen([binary, "-host", "127.0.0.1", "-port", str(self.api)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        wait_for("toxiproxy", lambda: listening(self.api))
        self.call("/proxies", {"name": "kafka", "listen": f"127.0.0.1:{self.port}",
                               "upstream": f"127.0.0.1:{broker_port}", "enabled": True})
        self.call("/proxies/kafka/toxics", {"name": "latency", "type": "latency", "stream": "downstream",
                                            "toxicity": 1.0, "attributes": {"latency": latency_ms, "jitter": 0}})

    def call(self, path, body):
        request = urllib.request.Request(f"http://127.0.0.1:{self.api}{path}", data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class Certificates:
    """A throwaway CA and a certificate for 127.0.0.1 it signed, made with the openssl CLI."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="kaos-bench-tls-")
        path = lambda name: os.path.join(self.dir.name, name)
        self.ca, self.cert, self.key = path("ca.pem"), path("server.pem"), path("server-key.pem")
        run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca-key.pem"), "-out", self.ca,
            "-days", "2", "-subj", "/CN=kaos-bench-ca")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", path("server.csr"),
            "-subj", "/CN=localhost")
        with open(path("san.ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("x509", "-req", "-in", path("server.csr"), "-CA", self.ca, "-CAkey", path("ca-key.pem"),
            "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", path("san.ext"))


class Stunnel:
    """Debian's stunnel4 terminating TLS in front of a plaintext port: the direct TLS reference."""

    def __init__(self, certificates, connect_port):
        self.port = free_port()
        self.config = os.path.join(certificates.dir.name, "stunnel.conf")
        with open(self.config, "w") as f:
            f.write(f"foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{self.port}\n"
                    f"connect = 127.0.0.1:{connect_port}\ncert = {certificates.cert}\nkey = {certificates.key}\n")
        self.process = subprocess.Popen(["stunnel4", self.config], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        wait_for("stunnel", lambda: listening(self.port))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class Target:
    """Where clients connect for one side of a comparison, and the client settings it needs."""

    def __init__(self, name, port, pid=None, advertised_port=None, prepare=lambda: None, client_flags=(),
                 bootstrap_servers=None):
        self.name, self.port, self.pid = name, port, pid
        self.advertised_port, self.prepare = advertised_port, prepare
        self.client_flags = list(client_flags)
        self.bootstrap_servers = bootstrap_servers  # HOST:PORT,... in place of 127.0.0.1:port

    @property
    def bootstrap(self):
        return self.bootstrap_servers or f"127.0.0.1:{self.port}"


class KafkaCluster:
    """A 3-node Apache Kafka cluster (KRaft) from tests/kafka/cluster.py's command line, in a
    temporary directory: `start`, `tool` (a Kafka tool with the cluster's jars), `stop`."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "kafka", "cluster.py")

    def __init__(self, libs=None):
        self.dir = tempfile.mkdtemp(prefix="kaos-bench-kafka-")
        started = time.monotonic()
        try:
            subprocess.run([sys.executable, self.SCRIPT, "start", "--dir", self.dir, *(["--libs", libs] if libs else [])],
                           check=True, stdout=subprocess.DEVNULL, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        with open(os.path.join(self.dir, "cluster.json")) as f:
            self.bootstrap = json.load(f)["bootstrap"]

    def tool(self, name, *args, timeout=300):
        """stdout + stderr of a Kafka tool; exits the benchmark when the tool fails."""
        command = [sys.executable, self.SCRIPT, "tool", "--dir", self.dir, name, *args]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as timeout_error:
            sys.exit(f"{name} {' '.join(args)} did not finish in {timeout} s:\n{timeout_error.stderr}")
        if result.returncode != 0:
            sys.exit(f"{name} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    def stop(self):
        if os.path.exists(os.path.join(self.dir, "cluster.json")):
            subprocess.run([sys.executable, self.SCRIPT, "stop", "--dir", self.dir], timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


def rate_from(output, pattern):
    rates = re.findall(pattern, output)  # the last summary line is the final one
    return float(rates[-1]) if rates and float(rates[-1]) > 0 else None


def perf(perf_bin, args, target):
    try:
        result = subprocess.run([perf_bin, *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as timeout:
        tail = (timeout.stderr or b"")[-2000:].decode(errors="replace")
        sys.exit(f"rdkafka_performance {' '.join(args)} through {target.name} did not finish in 60 s:\n{tail}")
    return result.stdout + result.stderr


class Bench:
    def __init__(self, args):
        self.args = args
        self.tansu = Tansu(args.tansu)
        self.tansu.restart()
        self.kaos = Kaos(args.kaos, self.tansu.port)
        self.haproxy = Haproxy(self.tansu.port)
        self.tansu_proxy = TansuProxy(args.tansu, self.tansu.port)
        self.kaos.prepare()
        self.direct = Target("direct", self.tansu.port)
        self.targets = {
            "direct": self.direct,
            "kaos": Target("kaos", self.kaos.port, self.kaos.pid, prepare=self.kaos.prepare),
            "tansu-proxy": Target("tansu-proxy", self.tansu_proxy.port, prepare=self.tansu_proxy.restart),
            "haproxy": Target("haproxy", self.haproxy.port, self.haproxy.pid, advertised_port=self.haproxy.port),
        }
        if args.baseline_kaos:
            self.baseline_kaos = Kaos(args.baseline_kaos, self.tansu.port)
            self.baseline_kaos.prepare()
            self.targets["kaos-baseline"] = Target("kaos-baseline", self.baseline_kaos.port, self.baseline_kaos.pid,
                                                   prepare=self.baseline_kaos.prepare)
        self.results = {}
        self.lines = []

    def stop(self):
        for process in (self.kaos, getattr(self, "baseline_kaos", None), self.haproxy, self.tansu_proxy, self.tansu):
            if process is None:
                continue
            try:
                process.stop()
            except Exception as error:  # keep stopping the others
                print(f"stopping {process}: {error}", file=sys.stderr)

    def fresh(self, target, topics):
        self.tansu.restart(target.advertised_port)
        for topic, partitions in topics:
            self.tansu.create_topic(topic, partitions)
        target.prepare()

    def report(self, line=""):
        print(line, flush=True)
        self.lines.append(line)

    def paired(self, label, sides, run):
        """Alternating rounds over `sides` (name -> Target); `run(target)` returns {metric: value}."""
        samples = {}
        names = list(sides)
        for round_number in range(self.args.pairs):
            order = names if round_number % 2 == 0 else list(reversed(names))
            for name in order:
                for metric, value in run(sides[name]).items():
                    samples.setdefault((name, metric), []).append(value)
        self.results[label] = samples
        return samples

    def ratio_table(self, title, samples, base, others, metrics):
        """Medians per side, and each other side's ratio to `base`: of the medians, and the
        min-max of the per-round ratios."""
        self.report(f"\n### {title}\n")
        self.report("| metric | " + " | ".join(f"{n} (median)" for n in [base, *others]) + " | "
                    + " | ".join(f"{o} / {base} (min-max)" for o in others) + " |")
        self.report("|---" * (2 + 2 * len(others)) + "|")
        for metric in metrics:
            medians = {n: statistics.median(samples[(n, metric)]) for n in [base, *others]}
            cells = []
            for other in others:
                pairs = [o / b for o, b in zip(samples[(other, metric)], samples[(base, metric)]) if b]
                ratio = medians[other] / medians[base] if medians[base] else float("nan")
                cells.append(f"{ratio:.3f} ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "n/a")
            self.report(f"| {metric} | " + " | ".join(f"{medians[n]:,.0f}" for n in [base, *others]) + " | "
                        + " | ".join(cells) + " |")

    # --- suites -------------------------------------------------------------------------------

    def produce_consume_rates(self, target, size, records, partitions, cpu=None):
        """One rdkafka_performance produce run then one consume run on fresh topics: msg/s each.
        With `cpu`, adds the target's CPU seconds and payload bytes to cpu[target.name]."""
        self.fresh(target, [("bench", partitions)])
        flags = ["-t", "bench", "-b", target.bootstrap, *target.client_flags]
        before = cpu_seconds(target.pid) if cpu is not None and target.name in cpu else None
        produced = rate_from(perf(self.args.perf, ["-P", "-s", str(size), "-c", str(records), "-X", "acks=all",
                                                   "-X", "linger.ms=5", *flags], target), r"in \d+ms: (\d+) msgs/s")
        consume = ["-C", "-c", str(records), "-X", "fetch.wait.max.ms=10", *flags]
        consume += ["-p", "0", "-o", "beginning"] if partitions == 1 else \
            ["-G", f"g{time.time_ns()}", "-X", "auto.offset.reset=earliest"]
        consumed = rate_from(perf(self.args.perf, consume, target), r"consumed in \d+ms: (\d+) msgs/s")
        if before is not None:
            cpu[target.name][0] += cpu_seconds(target.pid) - before
            cpu[target.name][1] += 2 * records * size
        if produced is None or consumed is None:
            sys.exit(f"rdkafka_performance failed through {target.name}")
        return {"produce msg/s": produced, "consume msg/s": consumed}

    def round_trip(self, target):
        """kaos-loadtest's closed loop (one request in flight): round-trip percentiles in µs."""
        self.fresh(target, [("latency", 1)])
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([self.args.loadtest, "--bootstrap-servers", target.bootstrap, "--topic", "latency",
                            "--partitions", "1", "--closed-loop", str(self.args.latency_records),
                            "--summary-json", out.name], check=True, stdout=subprocess.DEVNULL, timeout=300)
            summary = json.load(open(out.name))["round_trip_us"]
        return {"p50 µs": summary["p50"], "p99 µs": summary["p99"], "p99.9 µs": summary["p999"]}

    def produce_rate(self, target, records):
        """One rdkafka_performance produce run (100 B, acks=all, 5 requests in flight): msg/s."""
        self.fresh(target, [("bench", 1)])
        flags = ["-t", "bench", "-b", target.bootstrap, *target.client_flags]
        produced = rate_from(perf(self.args.perf, ["-P", "-s", "100", "-c", str(records), "-X", "acks=all",
                                                   "-X", "linger.ms=5", "-X", "max.in.flight=5", *flags], target),
                             r"in \d+ms: (\d+) msgs/s")
        if produced is None:
            sys.exit(f"rdkafka_performance failed through {target.name}")
        return {"produce msg/s": produced}

    def latency_fault(self):
        """A producer under 100 ms on every answer: kaos's slow-broker against Toxiproxy's latency
        toxic, and the direct rate without latency for scale."""
        if not self.args.toxiproxy:
            self.report("\n(latency-fault suite skipped: no --toxiproxy)")
            return
        toxiproxy = Toxiproxy(self.args.toxiproxy, self.tansu.port, 100)
        # Every API the producer uses, as Toxiproxy delays every answer.
        apis = ["PRODUCE", "METADATA", "API_VERSIONS", "INIT_PRODUCER_ID", "FIND_COORDINATOR"]
        slowed = self.with_rules("kaos slow-broker", lambda: [self.kaos.add_rule(
            "slow-broker", {"minLatencyToAddInMilliseconds": 100}, api, "RESPONSE") for api in apis])
        sides = {"direct, no latency": self.direct, "kaos slow-broker": slowed,
                 "toxiproxy latency": Target("toxiproxy latency", toxiproxy.port, toxiproxy.pid,
                                             advertised_port=toxiproxy.port)}
        records = self.args.records
        try:
            samples = self.paired("latency-fault", sides, lambda target: self.produce_rate(target, records))
        finally:
            toxiproxy.stop()
            self.kaos.clear_rules()
        self.ratio_table(f"A producer under 100 ms of latency on every answer ({records:,} records of 100 B, "
                         "acks=all, 5 in flight)", samples, "toxiproxy latency",
                         ["kaos slow-broker", "direct, no latency"], ["produce msg/s"])

    def throughput(self):
        cpu = {"kaos": [0.0, 0], "haproxy": [0.0, 0]}
        for size, records in ((100, self.args.records), (1000, self.args.records // 5)):
            for partitions in (1, 3):
                samples = self.paired(f"throughput {size}B {partitions}p", self.targets,
                                      lambda target: self.produce_consume_rates(target, size, records, partitions, cpu))
                self.ratio_table(f"Throughput, {size}-byte records, {partitions} partition(s), {records:,} records",
                                 samples, "direct", ["kaos", "tansu-proxy", "haproxy"], ["produce msg/s", "consume msg/s"])
                kaos_vs = {m: [k / h for k, h in zip(samples[("kaos", m)], samples[("haproxy", m)])]
                           for m in ("produce msg/s", "consume msg/s")}
                self.report(f"\nkaos / haproxy per pair, median: produce {statistics.median(kaos_vs['produce msg/s']):.3f}, "
                            f"consume {statistics.median(kaos_vs['consume msg/s']):.3f}")
        for name, (seconds, payload) in cpu.items():
            if payload:
                self.report(f"\nCPU: {name} used {seconds / (payload / 1e9):.2f} CPU-seconds per GB of record payload")

    def tls(self):
        """kaos with TLS on both sides against a direct TLS connection: the TLS row."""
        certificates = Certificates()
        stunnel = Stunnel(certificates, self.tansu.port)
        kaos = Kaos(self.args.kaos, stunnel.port, ["--tls-cert", certificates.cert, "--tls-key", certificates.key,
                                                   "--upstream-tls", "--upstream-ca", certificates.ca])
        ssl = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={certificates.ca}"]
        try:
            sides = {"direct TLS": Target("direct TLS", stunnel.port, stunnel.pid, advertised_port=stunnel.port,
                                          client_flags=ssl),
                     "kaos TLS": Target("kaos TLS", kaos.port, kaos.pid, advertised_port=stunnel.port,
                                        prepare=kaos.prepare, client_flags=ssl)}
            for size, records in ((100, self.args.records), (1000, self.args.records // 5)):
                samples = self.paired(f"tls {size}B", sides,
                                      lambda target: self.produce_consume_rates(target, size, records, 1))
                self.ratio_table(f"TLS on both sides, {size}-byte records, 1 partition, {records:,} records",
                                 samples, "direct TLS", ["kaos TLS"], ["produce msg/s", "consume msg/s"])
        finally:
            kaos.stop()
            stunnel.stop()
            certificates.dir.cleanup()

    def baseline(self):
        if "kaos-baseline" not in self.targets:
            sys.exit("the baseline suite needs --baseline-kaos")
        sides = {n: self.targets[n] for n in ("kaos-baseline", "kaos")}
        for size, records in ((100, self.args.records), (1000, self.args.records // 5)):
            samples = self.paired(f"baseline {size}B", sides,
                                  lambda target: self.produce_consume_rates(target, size, records, 1))
            self.ratio_table(f"This kaos against the baseline build, {size}-byte records, 1 partition",
                             samples, "kaos-baseline", ["kaos"], ["produce msg/s", "consume msg/s"])
        samples = self.paired("baseline latency", sides, self.round_trip)
        self.ratio_table("This kaos against the baseline build, round trip (lower is better)",
                         samples, "kaos-baseline", ["kaos"], ["p50 µs", "p99 µs", "p99.9 µs"])

    def kafka(self):
        """kaos in front of a 3-node Apache Kafka cluster against a direct connection, with Kafka's
        own Java tools, each run on a fresh 3-partition topic (replication 3) created directly."""
        records = self.args.kafka_records
        title = (f"Apache Kafka 3 nodes, Java perf tools: {records:,} 100-byte records, 3 partitions, "
                 f"replication 3, produce acks=all")
        if shutil.which("java") is None:
            self.report(f"\n### {title}\n\nskipped: no `java` on this machine")
            return
        cluster = KafkaCluster(self.args.kafka_libs)
        kaos = None
        try:
            kaos = Kaos(self.args.kaos, cluster.bootstrap)
            kaos.prepare()
            runs = itertools.count()

            def run(target):
                topic = f"bench-{next(runs)}"
                cluster.tool("kafka-topics", "--bootstrap-server", cluster.bootstrap, "--create", "--topic", topic,
                             "--partitions", "3", "--replication-factor", "3")
                produced = cluster.tool("kafka-producer-perf-test", "--topic", topic, "--num-records", str(records),
                                        "--record-size", "100", "--throughput", "-1", "--producer-props",
                                        f"bootstrap.servers={target.bootstrap}", "acks=all")
                # The last summary line: "200000 records sent, 41000.5 records/sec (3.91 MB/sec), ..."
                summary = re.findall(r"^(\d+) records sent, ([\d.]+) records/sec", produced, re.MULTILINE)
                if not summary or int(summary[-1][0]) != records:
                    sys.exit(f"kafka-producer-perf-test through {target.name} did not send {records} records:\n{produced}")
                consumed = cluster.tool("kafka-consumer-perf-test", "--bootstrap-server", target.bootstrap,
                                        "--topic", topic, "--messages", str(records), "--group", f"bench-{topic}")
                # A CSV header (start.time, ..., nMsg.sec, rebalance.time.ms, ..., fetch.nMsg.sec), then values.
                lines = [line.split(", ") for line in consumed.splitlines() if line.count(", ") >= 9]
                header = next((line for line in lines if "nMsg.sec" in line), None)
                values = lines[-1] if lines and lines[-1] is not header else None
                if header is None or values is None or len(values) != len(header):
                    sys.exit(f"kafka-consumer-perf-test through {target.name}: no summary in\n{consumed}")
                row = dict(zip(header, values))
                if int(float(row["data.consumed.in.nMsg"])) < records:
                    sys.exit(f"kafka-consumer-perf-test through {target.name} read {row['data.consumed.in.nMsg']} "
                             f"of {records} records:\n{consumed}")
                return {"produce msg/s": float(summary[-1][1]), "consume msg/s": float(row["nMsg.sec"]),
                        "consume msg/s, fetch only": float(row["fetch.nMsg.sec"])}

            sides = {"direct": Target("direct", None, bootstrap_servers=cluster.bootstrap),
                     "kaos": Target("kaos", kaos.port, kaos.pid)}
            # One untimed run first: the first consumer group of a new cluster waits for
            # __consumer_offsets to be created, which would weigh on whichever side came first.
            cluster.tool("kafka-topics", "--bootstrap-server", cluster.bootstrap, "--create", "--topic", "warm-up",
                         "--partitions", "3", "--replication-factor", "3")
            cluster.tool("kafka-producer-perf-test", "--topic", "warm-up", "--num-records", "1000", "--record-size",
                         "100", "--throughput", "-1", "--producer-props", f"bootstrap.servers={cluster.bootstrap}")
            cluster.tool("kafka-consumer-perf-test", "--bootstrap-server", cluster.bootstrap, "--topic", "warm-up",
                         "--messages", "1000", "--group", "warm-up")
            samples = self.paired("kafka", sides, run)
            self.ratio_table(title, samples, "direct", ["kaos"],
                             ["produce msg/s", "consume msg/s", "consume msg/s, fetch only"])
            self.report(f"\n(cluster started in {cluster.started_in:.0f} s; consume msg/s includes the consumer "
                        f"group's join, fetch only does not)")
        finally:
            if kaos is not None:
                kaos.stop()
            cluster.stop()

    def memory(self):
        """Resident memory per client connection, kaos beside HAProxy, each freshly started (as a
        new user would), on one broker. No pairing: memory is not noisy. Connections are held
        open after their round trip, as idle clients are."""
        kaos, haproxy = Kaos(self.args.kaos, self.tansu.port), Haproxy(self.tansu.port)
        try:
            kaos.prepare()
            sides = {"kaos": (kaos.port, kaos.pid), "haproxy": (haproxy.port, haproxy.pid)}
            self.report("\n### Resident memory per client connection (one Metadata round trip each, then idle)\n")
            self.report("| connections | " + " | ".join(f"{n} MB | {n} KB per connection" for n in sides) + " |")
            self.report("|---" * (1 + 2 * len(sides)) + "|")
            for count in (1, 1000, 5000):
                cells = []
                for port, pid in sides.values():
                    before = resident_bytes(pid)
                    connections = open_connections(port, count)
                    time.sleep(0.5)
                    during = resident_bytes(pid)
                    for connection in connections:
                        connection.close()
                    cells.append(f"{during / 1e6:,.1f} | {max(during - before, 0) / count / 1024:,.1f}")
                    time.sleep(1)
                self.report(f"| {count:,} | " + " | ".join(cells) + " |")
            churned = []
            for name, (port, pid) in sides.items():
                for _ in range(2):
                    for connection in open_connections(port, 2000):
                        connection.close()
                    time.sleep(1)
                churned.append(f"{name} {resident_bytes(pid) / 1e6:,.1f} MB")
            self.report(f"\nAfter 2,000 more connections opened and closed twice: {', '.join(churned)} resident.")
        finally:
            kaos.stop()
            haproxy.stop()

    def latency(self):
        others = ["kaos", "haproxy"] + (["kaos-baseline"] if "kaos-baseline" in self.targets else [])
        sides = {n: self.targets[n] for n in ["direct", *others]}
        samples = self.paired("latency", sides, self.round_trip)
        self.ratio_table(f"Round trip, one request in flight ({self.args.latency_records} records per run)",
                         samples, "direct", others, ["p50 µs", "p99 µs", "p99.9 µs"])
        for metric in ("p50 µs", "p99 µs", "p99.9 µs"):
            for other in others:
                added = statistics.median([o - d for o, d in zip(samples[(other, metric)], samples[("direct", metric)])])
                self.report(f"- {other} adds {added:+.0f} µs at {metric.split()[0]} (median of per-pair differences)")

    def connections(self):
        sides = {n: self.targets[n] for n in ("direct", "kaos", "haproxy")}
        for count in (1, 8, 64):
            def run(target):
                self.fresh(target, [("conns", 3)])
                with tempfile.NamedTemporaryFile(suffix=".json") as out:
                    subprocess.run([self.args.loadtest, "--bootstrap-servers", target.bootstrap, "--topic", "conns",
                                    "--partitions", "3", "--producers", str(count), "--consumers", "0", "--rate", "0",
                                    "--duration", str(self.args.connection_seconds), "--record-size", "100",
                                    "--producer-config", "linger.ms=5", "--summary-json", out.name],
                                   check=True, stdout=subprocess.DEVNULL, timeout=300)
                    summary = json.load(open(out.name))
                return {"acked msg/s": summary["produced"]["acked"] / summary["seconds"]}
            samples = self.paired(f"connections {count}", sides, run)
            self.ratio_table(f"{count} producer connection(s), flat out, 100-byte records", samples, "direct",
                             ["kaos", "haproxy"], ["acked msg/s"])

    def produce_consume(self, target):
        return self.produce_consume_rates(target, 100, self.args.records, 1)

    def with_rules(self, name, install):
        def prepare():
            self.kaos.prepare()
            self.kaos.clear_rules()
            install()
        return Target(name, self.kaos.port, self.kaos.pid, prepare=prepare)

    def rules(self):
        def non_matching():
            for i in range(6):
                self.kaos.add_rule("slow-topic", {"topicPatterns": [f"nomatch-{i}-.*"], "minLatencyToAddInMilliseconds": 1000})
            for i in range(4):
                self.kaos.add_rule("random-bytes", {"topics": [f"absent-{i}"]})
            for i in range(4):
                self.kaos.add_rule("slow-topic", {"topicPatterns": [f"nomatch-{i}-.*"]}, "FETCH", "RESPONSE")
            self.kaos.add_rule("broken-broker", {"brokerIds": [9999]})
            self.kaos.add_rule("leader-election", {"brokerIds": [9999]}, "FETCH")
            for api in ("LIST_OFFSETS", "OFFSET_COMMIT", "JOIN_GROUP", "DELETE_TOPICS"):
                self.kaos.add_rule("slow-broker", {"minLatencyToAddInMilliseconds": 1000}, api)

        def rate_zero():
            for i, feature in enumerate(["broken-broker", "leader-election", "slow-broker", "duplicate-resource",
                                         "random-bytes", "invalid-schema", "slow-topic"] * 3):
                if i >= 20:
                    break
                config = {"rateInPercent": 0}
                if feature == "invalid-schema":
                    config["fakeSchemaId"] = 999
                if feature == "slow-topic":
                    config["topicPatterns"] = ["bench"]
                self.kaos.call("POST", f"/tenant/bench/user/user-{i}/feature/{feature}",
                               {"config": config, "apiKeys": "PRODUCE", "direction": "REQUEST"})

        def other_clients():
            # Scoped to client ids rdkafka_performance does not use: matched once per connection.
            for i, feature in enumerate(["broken-broker", "leader-election", "slow-broker", "duplicate-resource"] * 5):
                self.kaos.call("POST", f"/tenant/bench/user/user-{i}/feature/{feature}",
                               {"config": {"clientIds": [f"other-app-{i}"]}, "apiKeys": "PRODUCE" if i % 2 else "FETCH",
                                "direction": "REQUEST"})

        sides = {"no rules": self.with_rules("no rules", lambda: None),
                 "20 non-matching": self.with_rules("20 non-matching", non_matching),
                 "20 at rate 0%": self.with_rules("20 at rate 0%", rate_zero),
                 "20 for other clients": self.with_rules("20 for other clients", other_clients)}
        samples = self.paired("rules", sides, self.produce_consume)
        self.ratio_table("Rules overhead through kaos", samples, "no rules",
                         ["20 non-matching", "20 at rate 0%", "20 for other clients"], ["produce msg/s", "consume msg/s"])
        self.kaos.clear_rules()

    def chaos(self):
        sides = {"pass-through": self.with_rules("pass-through", lambda: None),
                 "random-bytes 100%": self.with_rules("random-bytes 100%", lambda: self.kaos.add_rule(
                     "random-bytes", {"topics": ["bench"], "nbMessages": 1, "sizeInBytes": 10})),
                 "invalid-schema 100%": self.with_rules("invalid-schema 100%", lambda: self.kaos.add_rule(
                     "invalid-schema", {"topics": ["bench"], "fakeSchemaId": 999})),
                 # Consume side: every Fetch answer is decoded, changed and encoded again.
                 "duplicate-resource FETCH 100%": self.with_rules("duplicate-resource FETCH 100%", lambda: self.kaos.add_rule(
                     "duplicate-resource", {"topics": ["bench"]}, "FETCH")),
                 "random-bytes FETCH 100%": self.with_rules("random-bytes FETCH 100%", lambda: self.kaos.add_rule(
                     "random-bytes", {"topics": ["bench"], "nbMessages": 1, "sizeInBytes": 10}, "FETCH"))}
        samples = self.paired("chaos", sides, self.produce_consume)
        self.ratio_table("Record-rewriting chaos on every produce batch", samples, "pass-through",
                         ["random-bytes 100%", "invalid-schema 100%"], ["produce msg/s"])
        # rdkafka_performance counts every record it is given, repeats included.
        self.ratio_table("Record-rewriting chaos on every fetch answer", samples, "pass-through",
                         ["duplicate-resource FETCH 100%", "random-bytes FETCH 100%"], ["consume msg/s"])
        self.kaos.clear_rules()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kaos", required=True)
    parser.add_argument("--loadtest", required=True, help="path to kaos-loadtest")
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--perf", required=True, help="path to rdkafka_performance")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--records", type=int, default=1_000_000, help="records per throughput run (100 B)")
    parser.add_argument("--latency-records", type=int, default=2000)
    parser.add_argument("--connection-seconds", type=float, default=3)
    parser.add_argument("--suites", default="throughput,latency,connections,memory,rules,chaos,tls,kafka,latency-fault")
    parser.add_argument("--baseline-kaos", help="another kaos binary, for the baseline suite")
    parser.add_argument("--kafka-libs", help="Apache Kafka's jars for the kafka suite (default: tests/kafka/cluster.py's)")
    parser.add_argument("--kafka-records", type=int, default=200_000, help="records per kafka suite run (100 B)")
    parser.add_argument("--toxiproxy", help="Toxiproxy's server binary, for the latency-fault suite")
    parser.add_argument("--output", help="also write the tables (markdown) to this file")
    args = parser.parse_args()

    started = time.monotonic()
    bench = Bench(args)
    try:
        bench.report(f"kaos benchmark: {args.pairs} alternating rounds per comparison, "
                     f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        for suite in args.suites.split(","):
            getattr(bench, suite.replace("-", "_"))()
    finally:
        bench.stop()
    bench.report(f"\n(whole run: {time.monotonic() - started:.0f} s)")
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(bench.lines) + "\n")


if __name__ == "__main__":
    main()
