"""The Helm chart (deploy/helm/kaos), checked offline: `helm lint` and `helm template` over every
values file in its ci/ folder, every rendered manifest validated against the Kubernetes JSON
schemas (kubernetes-validate, strict: unknown fields fail) and the ServiceMonitor against the
Prometheus Operator's CRD schema; the Service's ports are the ports a real kaos opens for those
broker ids, in front of the shared Kafka cluster.

Not verified here (no Kubernetes cluster on these machines): that pods schedule, that the
kubelet loads the Localhost seccomp profile the installer writes, and probes against a live pod.
`make deps` installs helm (from the Go module proxy) and the ServiceMonitor CRD.
"""

import copy
import json
import os
import pathlib
import re
import subprocess
import time

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import Process, free_port, http_status, port_is_free, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/kaos"
VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CACHE = pathlib.Path(os.environ.get("KAOS_CACHE", pathlib.Path.home() / ".cache/kaos"))
HELM = CACHE / "go/bin/helm"
SERVICEMONITOR_CRD = CACHE / "helm/servicemonitors-crd.yaml"
# The oldest Kubernetes still maintained by major providers, and the newest the schemas know.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def helm(*args, check=True):
    assert HELM.exists(), f"{HELM} is missing: `make deps` installs helm"
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def render(*args):
    """The manifests `helm template` renders, as dicts."""
    out = helm("template", "kaos", str(CHART), "--namespace", "staging", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(docs, kind):
    return [doc for doc in docs if doc["kind"] == kind]


def strict(schema):
    """A CRD's structural schema with unknown fields refused, as the API server prunes them."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def servicemonitor_schema():
    assert SERVICEMONITOR_CRD.exists(), f"{SERVICEMONITOR_CRD} is missing: `make deps` fetches it"
    crd = yaml.safe_load(SERVICEMONITOR_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return strict(version["schema"]["openAPIV3Schema"])


def test_there_are_values_files_to_check():
    assert {path.name for path in VALUES} >= {"minimal-values.yaml", "secured-values.yaml",
                                               "unconfined-values.yaml"}


@pytest.mark.parametrize("values", VALUES, ids=lambda path: path.stem)
def test_the_chart_lints(values):
    linted = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in linted.stdout, linted.stdout


@pytest.mark.parametrize("values", VALUES, ids=lambda path: path.stem)
def test_every_rendered_manifest_is_valid_for_kubernetes(values):
    docs = render("-f", str(values))
    kinds = sorted(doc["kind"] for doc in docs)
    assert {"Deployment", "Service"} <= set(kinds), kinds
    for doc in docs:
        name = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, servicemonitor_schema())
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{values.name}: {name} is invalid for Kubernetes {version}: {error.message} "
                            f"at {list(error.path)}")


def test_a_servicemonitor_with_an_unknown_field_fails_its_schema():
    """The ServiceMonitor check can fail: a misspelt field does."""
    monitor = of_kind(render("-f", str(CHART / "ci/secured-values.yaml")), "ServiceMonitor")[0]
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, servicemonitor_schema())


def test_missing_or_impossible_values_fail_with_the_value_named():
    failed = helm("template", "kaos", str(CHART), check=False)
    assert failed.returncode != 0 and "kafka.bootstrapServers is required" in failed.stderr, failed.stderr
    base = ["--set", "kafka.bootstrapServers=k:9092"]
    failed = helm("template", "kaos", str(CHART), *base, check=False)
    assert "kafka.brokerIds is required" in failed.stderr, failed.stderr
    failed = helm("template", "kaos", str(CHART), *base, "--set", "kafka.brokerIds={1,70000}", check=False)
    assert "broker 70000 would be served on port 76970" in failed.stderr, failed.stderr
    failed = helm("template", "kaos", str(CHART), *base, "--set", "kafka.brokerIds={1}",
                  "--set", "seccomp.type=RuntimeDefault", check=False)
    assert "RuntimeDefault refuses io_uring" in failed.stderr, failed.stderr


def test_secrets_reach_kaos_as_files_or_secret_references_never_as_arguments():
    docs = render("-f", str(CHART / "ci/secured-values.yaml"))
    pod = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert not any(re.search(r"password|token|secret|\.key", arg, re.I) for arg in container.get("args", []))
    env = {item["name"]: item for item in container["env"]}
    assert env["KAOS_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "kaos-admin", "key": "token"}
    assert "value" not in env["KAOS_ADMIN_TOKEN"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume["secret"]["secretName"] for volume in pod["volumes"]}
    for variable, volume, secret in [("KAOS_UPSTREAM_SASL_PASSWORD_FILE", "upstream-sasl", "kaos-kafka-password"),
                                     ("KAOS_TLS_KEY", "tls", "kaos-tls"),
                                     ("KAOS_UPSTREAM_KEY", "upstream-cert", "kaos-client-cert"),
                                     ("KAOS_UPSTREAM_CA", "upstream-ca", "kafka-ca"),
                                     ("KAOS_CLIENT_USERS", "client-users", "kaos-users")]:
        assert env[variable]["value"].startswith(mounts[volume] + "/"), (variable, env[variable])
        assert volumes[volume] == secret
    assert all(mount.get("readOnly") for mount in container["volumeMounts"])


def test_replicas_share_rules_and_probe_health_and_readiness():
    docs = render("-f", str(CHART / "ci/minimal-values.yaml"))
    deployment = of_kind(docs, "Deployment")[0]
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["KAOS_RULES_TOPIC"] == "_kaos-rules"
    assert env["KAOS_ADVERTISED_HOST"] == "kaos.staging.svc.cluster.local", "the Service's name"
    assert of_kind(docs, "Service")[0]["metadata"]["name"] == "kaos"
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert container["resources"]["requests"], "resource requests"
    assert of_kind(docs, "PodDisruptionBudget")


def test_the_seccomp_profile_installed_is_the_one_kaos_ships():
    docs = render("-f", str(CHART / "ci/minimal-values.yaml"))
    shipped = json.loads((ROOT / "deploy/seccomp/kaos-seccomp.json").read_text())
    config_map = of_kind(docs, "ConfigMap")[0]
    assert json.loads(config_map["data"]["kaos-seccomp.json"]) == shipped
    pod = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    profile = pod["securityContext"]["seccompProfile"]
    assert profile == {"type": "Localhost", "localhostProfile": "kaos/kaos-seccomp.json"}
    installer = of_kind(docs, "DaemonSet")[0]["spec"]["template"]["spec"]
    assert f"/host-seccomp/{profile['localhostProfile']}" in installer["containers"][0]["args"][0]
    assert installer["volumes"][1]["hostPath"]["path"] == "/var/lib/kubelet/seccomp"
    unconfined = render("-f", str(CHART / "ci/unconfined-values.yaml"))
    assert not of_kind(unconfined, "DaemonSet") and not of_kind(unconfined, "ConfigMap")


def listening_ports(pid):
    listed = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in listed.splitlines() if f"pid={pid}," in line}


def test_the_service_ports_are_the_ports_kaos_opens(kafka_cluster, tmp_path):
    for _ in range(100):
        port_start = free_port()
        if port_start < 64000 and all(port_is_free(port_start + 1 + node) for node in kafka_cluster.node_ids):
            break
    admin_port = free_port()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"kafka": {"bootstrapServers": kafka_cluster.bootstrap,
                                                "brokerIds": kafka_cluster.node_ids},
                                      "portStart": port_start, "adminPort": admin_port}))
    docs = render("-f", str(values))
    service_ports = {port["port"] for port in of_kind(docs, "Service")[0]["spec"]["ports"]}
    container = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert {port["containerPort"] for port in container["ports"]} == service_ports

    kaos = Process("kaos", [os.environ["KAOS_BIN"], "--bootstrap-servers", kafka_cluster.bootstrap,
                            "--port-start", str(port_start), "--admin-addr", f"127.0.0.1:{admin_port}",
                            "--shards", "2"])
    try:
        wait_until("kaos ready", lambda: http_status(f"http://127.0.0.1:{admin_port}/ready") == 200, timeout=30)
        # kaos opens a broker's port once it has learned the broker from the cluster's Metadata.
        deadline = time.monotonic() + 20
        while listening_ports(kaos.popen.pid) != service_ports and time.monotonic() < deadline:
            time.sleep(0.2)
        assert listening_ports(kaos.popen.pid) == service_ports, kaos.output()
    finally:
        kaos.stop()
