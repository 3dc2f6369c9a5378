"""What can be checked of the container setup without a Docker engine: the compose file's
services, ports and settings, and the Dockerfiles' lint and shape."""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_compose_has_a_two_node_kraft_cluster():
    services = compose()["services"]
    brokers = {name: s for name, s in services.items() if s.get("image", "").startswith("apache/kafka")}
    assert sorted(brokers) == ["kafka1", "kafka2"]
    node_ids = sorted(int(s["environment"]["KAFKA_NODE_ID"]) for s in brokers.values())
    assert node_ids == [1, 2]
    for service in brokers.values():
        environment = service["environment"]
        assert "controller" in environment["KAFKA_PROCESS_ROLES"], "KRaft, no ZooKeeper"
        assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka1:9093,2@kafka2:9093"
    assert "zookeeper" not in " ".join(services)


def test_compose_publishes_kaos_ports_for_every_broker_and_the_api():
    services = compose()["services"]
    kaos = services["kaos"]
    assert kaos["build"] == "."
    environment = kaos["environment"]
    assert environment["KAOS_BOOTSTRAP_SERVERS"] == "kafka1:9092,kafka2:9092"
    assert environment["KAOS_ADVERTISED_HOST"] == "kaos"
    port_start = int(environment["KAOS_PORT_START"])
    published = {int(p.split(":")[0]) for p in kaos["ports"]}
    brokers = [int(s["environment"]["KAFKA_NODE_ID"]) for n, s in services.items() if n.startswith("kafka") and n[5:].isdigit()]
    expected = {port_start, 8888} | {port_start + 1 + node for node in brokers}
    assert published == expected, f"kaos serves broker N on port-start + 1 + N: {published} vs {expected}"
    assert environment["KAOS_ADMIN_ADDR"].endswith(":8888")


def test_compose_lets_glommio_run_under_the_shipped_seccomp_profile():
    kaos = compose()["services"]["kaos"]
    assert kaos["ulimits"]["memlock"] == {"soft": -1, "hard": -1}, "io_uring needs locked memory before Linux 5.12"
    profile = [opt.split("=", 1)[1] for opt in kaos["security_opt"] if opt.startswith("seccomp=")]
    assert profile == ["./deploy/seccomp/kaos-seccomp.json"], "not seccomp=unconfined: the shipped profile"
    assert (ROOT / profile[0]).is_file()


def test_the_seccomp_profile_is_a_default_profile_plus_io_uring():
    profile = json.loads((ROOT / "deploy/seccomp/kaos-seccomp.json").read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO", "everything not listed stays refused"
    allowed = [rule for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"]
    io_uring = [rule for rule in allowed if any(name.startswith("io_uring") for name in rule["names"])]
    assert [sorted(rule["names"]) for rule in io_uring] == [["io_uring_enter", "io_uring_register", "io_uring_setup"]]
    assert "args" not in io_uring[0] and "includes" not in io_uring[0], "unconditional"
    names = {name for rule in allowed for name in rule["names"]}
    assert {"read", "write", "epoll_wait", "mmap", "clone"} <= names, "a whole default profile, not a stub"
    assert "mount" not in {name for rule in allowed if "includes" not in rule for name in rule["names"]}
    # The file is what deploy/seccomp/generate.py makes of itself: regenerating changes nothing.
    regenerated = subprocess.run([sys.executable, str(ROOT / "deploy/seccomp/generate.py"),
                                  str(ROOT / "deploy/seccomp/kaos-seccomp.json")], capture_output=True, text=True)
    assert json.loads(regenerated.stdout) == profile


def test_the_docker_context_keeps_build_output_out_and_the_workspace_in():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and "**/target" in ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY \. \.$", dockerfile, re.M), "the build stage copies the whole workspace"
    for member in ("testkit", "loadtest", "vendor", "src", "benches"):
        assert member not in ignored


def test_compose_has_a_client_with_console_tools_and_curl():
    client = compose()["services"]["kafka-client"]
    dockerfile = (ROOT / client["build"]["dockerfile"]).read_text()
    assert re.search(r"^FROM apache/kafka:", dockerfile, re.M), "the official image brings the console tools"
    assert "curl" in dockerfile
    assert "./docker/clientConfig:/clientConfig:ro" in client["volumes"]
    properties = (ROOT / "docker/clientConfig/proxy.properties").read_text()
    assert "bootstrap.servers=kaos:6969" in properties, "the seed's perf-test commands take bootstrap from here"


def test_dockerfile_is_multi_stage_non_root_and_health_checked():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2, "multi-stage"
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root"), "runs as non-root"
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile


def test_dockerfiles_are_lint_clean():
    hadolint = shutil.which("hadolint") or str(pathlib.Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile"), str(ROOT / "docker/client.Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
