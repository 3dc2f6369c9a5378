#!/usr/bin/env python3
"""`make bench`: librdkafka's rdkafka_performance straight to tansu and through kaos, in
alternating paired runs, reporting medians and the kaos / direct ratio.

Each run gets a fresh tansu (its memory engine keeps every record) and a fresh topic; kaos stays
up across runs, as it would in front of a real cluster. The machine is shared and noisy, so only
ratios from the same invocation mean anything.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
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


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tansu:
    def __init__(self, binary, port):
        self.binary, self.port, self.process = binary, port, None

    def restart(self):
        self.stop()
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
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


def run_perf(perf, args, pattern):
    result = subprocess.run([perf, *args], capture_output=True, text=True, timeout=180)
    # The last summary line is the final one (the consumer prints an empty one first).
    rates = re.findall(pattern, result.stdout + result.stderr)
    if result.returncode != 0 or not rates or float(rates[-1]) == 0:
        sys.exit(f"rdkafka_performance {' '.join(args)} printed no rate:\n{result.stdout}\n{result.stderr}")
    return float(rates[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kaos", required=True)
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--perf", required=True, help="path to rdkafka_performance")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--shards", type=int, default=0, help="kaos shards (0: kaos's default)")
    args = parser.parse_args()

    tansu = Tansu(args.tansu, free_port())
    port_start, admin = free_port(), f"127.0.0.1:{free_port()}"
    kaos_args = [args.kaos, "--bootstrap-servers", f"127.0.0.1:{tansu.port}", "--port-start", str(port_start),
                 "--admin-addr", admin, "--log-level", "warn"]
    if args.shards:
        kaos_args += ["--shards", str(args.shards)]
    tansu.restart()
    kaos = subprocess.Popen(kaos_args, stderr=subprocess.DEVNULL)
    targets = {"direct": f"127.0.0.1:{tansu.port}", "kaos": f"127.0.0.1:{port_start}"}
    produce_flags = ["-P", "-s", str(args.size), "-c", str(args.records), "-X", "acks=all", "-X", "linger.ms=5"]
    consume_flags = ["-C", "-p", "0", "-o", "beginning", "-c", str(args.records), "-X", "fetch.wait.max.ms=10"]
    results = {(target, load): [] for target in targets for load in ("produce", "consume")}
    kaos_cpu, kaos_bytes = 0.0, 0
    try:
        wait_for("kaos", lambda: ready(admin))
        for pair in range(args.pairs):
            order = ["direct", "kaos"] if pair % 2 == 0 else ["kaos", "direct"]
            for target in order:
                tansu.restart()
                tansu.create_topic("bench", 1)
                wait_for("kaos to see tansu", lambda: ready(admin))
                cpu_before = cpu_seconds(kaos.pid)
                bootstrap = ["-t", "bench", "-b", targets[target]]
                produced = run_perf(args.perf, produce_flags + bootstrap, r"in \d+ms: (\d+) msgs/s")
                consumed = run_perf(args.perf, consume_flags + bootstrap, r"consumed in \d+ms: (\d+) msgs/s")
                if target == "kaos":
                    kaos_cpu += cpu_seconds(kaos.pid) - cpu_before
                    kaos_bytes += 2 * args.records * args.size
                results[(target, "produce")].append(produced)
                results[(target, "consume")].append(consumed)
                print(f"pair {pair + 1}/{args.pairs} {target:6} produce {produced:>12,.0f} msg/s"
                      f"   consume {consumed:>12,.0f} msg/s", flush=True)
    finally:
        kaos.send_signal(signal.SIGTERM)
        kaos.wait(timeout=30)
        tansu.stop()

    print(f"\n{args.pairs} alternating pairs, {args.records:,} records of {args.size} bytes, 1 partition\n")
    print("| workload | direct median msg/s | kaos median msg/s | kaos / direct (median) | per-pair ratio min-max |")
    print("|---|---|---|---|---|")
    for load in ("produce", "consume"):
        direct, proxied = results[("direct", load)], results[("kaos", load)]
        ratios = [k / d for k, d in zip(proxied, direct)]
        print(f"| {load} | {statistics.median(direct):,.0f} | {statistics.median(proxied):,.0f} "
              f"| {statistics.median(proxied) / statistics.median(direct):.3f} "
              f"| {min(ratios):.3f}-{max(ratios):.3f} |")
    if kaos_bytes:
        print(f"\nkaos CPU: {kaos_cpu / (kaos_bytes / 1e9):.2f} CPU-seconds per GB of record payload forwarded")


if __name__ == "__main__":
    main()
