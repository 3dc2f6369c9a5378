"""The kaos image for real, with podman: built from the project's Dockerfile (its runtime stage,
on a Debian bookworm base made here with debootstrap, since no registry is reachable, and the
kaos binary this run built), run as the README recommends (host network, the seccomp profile kaos
ships, rules on a volume) in front of the shared 3-node Kafka cluster, with real clients.

Also: the build stage's context loads the workspace; under the runtime's default seccomp profile
the container exits at once with a line naming io_uring and seccomp; a 64 KiB locked-memory
limit (older Docker and containerd hosts) is enough.

`make deps` installs podman and runc and makes the base's root file system
($KAOS_CACHE/container/debian-bookworm-minbase.tar). podman runs under a containers.conf of the
test's own (runc, no default ulimits; crun fails on this host's cgroups), never the system's.
"""

import json
import os
import pathlib
import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import free_port, http_status, port_is_free, produce_and_consume, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROFILE = ROOT / "deploy/seccomp/kaos-seccomp.json"
BASE_IMAGE = "localhost/kaos-base:bookworm-minbase"
IMAGE = f"localhost/kaos-test:{uuid.uuid4().hex[:8]}"
# kaos's default --shutdown-timeout: SIGTERM must end the container within it.
DRAIN_TIMEOUT = 10


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """`podman` with a configuration of the test's own; the base image imported when missing."""
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: `make deps` installs it (apt-get install podman runc)", pytrace=False)
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(*args, check=True, timeout=300, **kwargs):
        result = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout,
                                **kwargs)
        if check:
            assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    if run("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        root_fs = pathlib.Path(os.environ["KAOS_CACHE"]) / "container/debian-bookworm-minbase.tar"
        assert root_fs.exists(), f"{root_fs} is missing: `make deps` makes it with debootstrap"
        with open(root_fs, "rb") as tar:
            run("import", "-", BASE_IMAGE, stdin=tar)
    return run


@pytest.fixture(scope="module")
def image(podman):
    """The Dockerfile's runtime stage, with the binary of this run (stripped) as its prebuilt stage."""
    binary = ROOT / "target/image/kaos"
    binary.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["strip", "-o", str(binary), os.environ["KAOS_BIN"]], check=True)
    podman("build", "--build-arg", "KAOS_BINARY=prebuilt", "--build-arg", f"RUNTIME_IMAGE={BASE_IMAGE}",
           "--target", "runtime", "-t", IMAGE, str(ROOT))
    yield IMAGE
    podman("rmi", "--force", IMAGE, check=False)


class Container:
    """kaos in a container on the host's network, on free ports, as the README runs it."""

    def __init__(self, podman, image, bootstrap, node_ids, volume, extra=()):
        self.podman = podman
        for _ in range(100):
            self.port_start = free_port()
            ports = [self.port_start + 1 + node for node in node_ids]
            if max(ports) < 65000 and all(map(port_is_free, ports)):
                break
        self.admin = f"127.0.0.1:{free_port()}"
        self.name = f"kaos-test-{uuid.uuid4().hex[:8]}"
        self.started = time.monotonic()
        podman("run", "--detach", "--name", self.name, "--network", "host",
               "--security-opt", f"seccomp={PROFILE}", "--volume", f"{volume}:/var/lib/kaos",
               "--env", f"KAOS_BOOTSTRAP_SERVERS={bootstrap}", "--env", "KAOS_BIND_HOST=127.0.0.1",
               "--env", f"KAOS_PORT_START={self.port_start}", "--env", f"KAOS_ADMIN_ADDR={self.admin}",
               "--env", "KAOS_RULES_FILE=/var/lib/kaos/rules.jsonl", "--env", "KAOS_SHARDS=2", *extra, image)

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port_start}"

    def url(self, path):
        return f"http://{self.admin}{path}"

    def logs(self):
        result = self.podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def state(self):
        inspected = json.loads(self.podman("inspect", self.name).stdout)[0]["State"]
        return inspected["Status"], inspected["ExitCode"]

    def wait_ready(self):
        try:
            wait_until("the container's /ready", lambda: http_status(self.url("/ready")) == 200, timeout=60)
        except TimeoutError:
            raise AssertionError(f"not ready; state {self.state()}; logs:\n{self.logs()}") from None

    def remove(self):
        self.podman("rm", "--force", "--time", "0", self.name, check=False)


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_the_build_stage_context_loads_the_workspace(podman, tmp_path):
    """What `COPY . .` gives the build stage (the context as .dockerignore trims it, copied by podman
    itself) is a workspace cargo can load: every member and path dependency is there."""
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text("FROM scratch\nCOPY . /src\n")
    tag = f"localhost/kaos-context:{uuid.uuid4().hex[:8]}"
    podman("build", "-f", str(containerfile), "-t", tag, str(ROOT))
    try:
        created = podman("create", tag, "/none").stdout.strip()
        tar = tmp_path / "context.tar"
        podman("export", "--output", str(tar), created)
        podman("rm", created)
    finally:
        podman("rmi", "--force", tag, check=False)
    context = tmp_path / "context"
    context.mkdir()
    subprocess.run(["tar", "-xf", str(tar), "-C", str(context)], check=True)
    src = context / "src"
    assert not (src / "target" / "release").exists(), ".dockerignore keeps build output out of the context"
    assert not (src / ".git").exists()
    loaded = subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked", "--offline",
                             "--manifest-path", str(src / "Cargo.toml")], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    members = {package["name"] for package in json.loads(loaded.stdout)["packages"]
               if package["source"] is None and package["manifest_path"].startswith(str(src))}
    assert {"kaos", "kaos-loadtest", "kaos-testkit"} <= members, members


def test_the_image_proxies_keeps_its_rules_and_stops_cleanly(podman, image, kafka_cluster):
    volume = f"kaos-rules-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", volume)
    containers = []
    try:
        first = Container(podman, image, kafka_cluster.bootstrap, kafka_cluster.node_ids, volume)
        containers.append(first)
        first.wait_ready()
        assert get_json(first.url("/health")) == {"status": "ok"}
        topic = f"container-{uuid.uuid4().hex}"
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        metadata = admin.list_topics(timeout=10)
        assert {broker.port for broker in metadata.brokers.values()} == \
            {first.port_start + 1 + node for node in kafka_cluster.node_ids}, "brokers at kaos's ports"
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)
        assert produce_and_consume(first.bootstrap, topic, 200) == sorted(f"v-{i}" for i in range(200))
        with urllib.request.urlopen(first.url("/metrics"), timeout=5) as response:
            metrics = response.read().decode()
        produced = [line for line in metrics.splitlines()
                    if line.startswith("kaos_requests_total") and 'api="Produce"' in line]
        assert produced and sum(float(line.rsplit(" ", 1)[1]) for line in produced) > 0, metrics[:2000]

        rule = {"config": {"errors": ["NOT_ENOUGH_REPLICAS"]}, "direction": "REQUEST",
                "apiKeys": "PRODUCE"}
        request = urllib.request.Request(first.url("/tenant/1-1/user/test@conduktor.io/feature/broken-broker"),
                                         data=json.dumps(rule).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).close()

        stopping = time.monotonic()
        podman("stop", "--time", str(DRAIN_TIMEOUT + 20), first.name)
        took = time.monotonic() - stopping
        assert first.state() == ("exited", 0), first.logs()
        assert took < DRAIN_TIMEOUT, f"SIGTERM took {took:.1f} s"
        assert "shutdown complete" in first.logs()

        second = Container(podman, image, kafka_cluster.bootstrap, kafka_cluster.node_ids, volume)
        containers.append(second)
        second.wait_ready()
        rules = get_json(second.url("/rules"))
        assert [r["feature"] for r in rules] == ["broken-broker"], rules
    finally:
        for container in containers:
            container.remove()
        podman("volume", "rm", "--force", volume, check=False)


def test_the_default_seccomp_profile_ends_kaos_at_once_with_the_reason(podman, image):
    started = time.monotonic()
    result = podman("run", "--rm", "--network", "host", "--env", "KAOS_BOOTSTRAP_SERVERS=127.0.0.1:9",
                    "--env", "KAOS_BIND_HOST=127.0.0.1", "--env", f"KAOS_PORT_START={free_port()}",
                    "--env", f"KAOS_ADMIN_ADDR=127.0.0.1:{free_port()}", image, check=False, timeout=60)
    took = time.monotonic() - started
    assert result.returncode != 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "io_uring" in line]
    assert len(lines) == 1 and "seccomp" in lines[0] and "kaos-seccomp.json" in lines[0], result.stderr
    assert "panicked" not in result.stderr, result.stderr
    # The container's own start and teardown take most of this; kaos itself exits within a second.
    assert took < 10, f"{took:.1f} s"


def test_a_64_kib_locked_memory_limit_is_enough(podman, image, kafka_cluster):
    """Docker and containerd hosts with systemd before 253 and Linux before 5.16 give containers
    64 KiB of locked memory, and Kubernetes cannot raise it per pod."""
    # Once one --ulimit is given, podman sets its own open-files and processes limits too, above
    # this host's hard limits, unless they are given as well.
    low_memlock = ("--ulimit", "memlock=65536:65536", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
    limits = podman("run", "--rm", *low_memlock, "--entrypoint", "bash", image, "-c", "ulimit -l; ulimit -Hl").stdout
    assert limits.split() == ["64", "64"], limits
    volume = f"kaos-memlock-{uuid.uuid4().hex[:8]}"
    container = Container(podman, image, kafka_cluster.bootstrap, kafka_cluster.node_ids, volume, extra=low_memlock)
    try:
        container.wait_ready()
        metadata = AdminClient({"bootstrap.servers": container.bootstrap}).list_topics(timeout=10)
        assert sorted(metadata.brokers) == kafka_cluster.node_ids
        # Two shards' rings of 128 entries would need 104 KiB; of 64 entries, 56.
        assert "ring_depth=64" in container.logs(), container.logs()
    finally:
        container.remove()
        podman("volume", "rm", "--force", volume, check=False)
