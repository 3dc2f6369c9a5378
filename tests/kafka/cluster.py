#!/usr/bin/env python3
"""A real Apache Kafka cluster on loopback for the tests: N nodes in KRaft combined mode (each
node is broker and controller), one JVM per node, started from the jars `make kafka` fetched.

    cluster.py start --dir DIR [--nodes 3] [--libs LIBS] [--tls-dir T | --no-tls] [--client-port P]
                                                           # formats, starts, waits, writes DIR/cluster.json
    cluster.py stop --dir DIR                              # every node: SIGTERM, then SIGKILL after a bound
    cluster.py stop-node --dir DIR --id N                  # one node (its data stays)
    cluster.py start-node --dir DIR --id N                 # the same node again, waits until it is back
    cluster.py status --dir DIR                            # which nodes run, what Metadata says
    cluster.py tool --dir DIR CLASS|NAME [ARGS...]         # a Kafka tool, e.g. kafka-topics --list ...
    cluster.py scram-user --dir DIR --name U --password P [--mechanism M]
                                                           # a SCRAM user made with kafka-configs

Python 3 standard library only (the system python3 runs it). Importable too: `Cluster.load(dir)`.

Each node N gets three listeners on 127.0.0.1: CLIENT (advertised, what clients use), INTERNAL
(replication between brokers) and CONTROLLER (the KRaft quorum, static voters 1..N). Ports are
picked below the kernel's ephemeral range, so a test's `bind(0)` never takes the port of a node
that is down for a while. Every node logs (stdout and stderr, appended across restarts) to
DIR/node-N/server.log.

Unless `--no-tls`, each node also gets a TLS-only client listener, TLS (security protocol SSL,
advertised on 127.0.0.1 with a port of its own; no client certificate asked for). Its certificate
and key come from `--tls-dir T` (T/ca.pem, T/server.pem, T/server.key: an unencrypted PKCS#8 key,
a certificate for IP:127.0.0.1) or, by default, are made at start with the openssl CLI into
DIR/tls (a CA and a server certificate for DNS:localhost,IP:127.0.0.1, RSA 2048, valid 7 days).
Kafka reads them as PEM stores (`listener.name.tls.ssl.keystore.type=PEM`: DIR/tls/keystore.pem,
the key then the certificate chain). cluster.json then holds `tls_bootstrap` (every node's TLS
listener), each node's `tls_port`, and `tls` (`ca`: the CA clients trust; `cert`, `key`,
`keystore`; `client_properties`: a Java client config for the TLS listeners, for a tool's
--command-config). Clients verify the host they dial: use 127.0.0.1 (or localhost).

Each node also gets a SASL client listener, SASL (security protocol SASL_PLAINTEXT, a port of its
own) and, with TLS, SASLTLS (SASL_SSL, the TLS listener's certificate and stores under
`listener.name.sasltls.`). Both take the mechanisms PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and
OAUTHBEARER (per listener: `listener.name.sasl.sasl.enabled.mechanisms`,
`listener.name.sasl.<mechanism>.sasl.jaas.config`). The users (SASL_USERS) are alice/alice-secret,
bob/bob-secret and kaos/kaos-secret (for a proxy that logs in itself): PLAIN's from the JAAS config,
SCRAM's (both hashes) written into the cluster's bootstrap metadata at format time (`kafka-storage
format --add-scram`: about 0.1 s per node; kafka-configs would cost a JVM, about 1 s, per user and
mechanism), and checked with a SCRAM login on every node before `start` returns. OAUTHBEARER takes
Kafka's unsecured JWS tokens (alg none; the default server callback handler,
OAuthBearerUnsecuredValidatorCallbackHandler): the `sub` claim is the principal, any name, no
password. No authorizer: whoever logs in may do anything; INTERNAL and CONTROLLER stay PLAINTEXT.
`Cluster.add_scram_user` (`cluster.py scram-user`) makes another SCRAM user with `kafka-configs
--alter --add-config` and waits until it logs in. cluster.json then holds `sasl_bootstrap` (every
node's SASL listener), `sasl_tls_bootstrap` (null without TLS), each node's `sasl_port` (and
`sasl_tls_port` with TLS), and `sasl`: `users` (name: password), `mechanisms`, and
`client_properties` / `tls_client_properties` (mechanism: a Java client config logging in as alice,
for a tool's --command-config; the latter null without TLS).
"""

import argparse
import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time

# What the broker logs once it serves (kafka.server.KafkaRaftServer).
STARTED = "Kafka Server started"

# The JVM of a node: a small heap suits a test cluster of small topics; SerialGC is the lightest
# collector for a 2-core machine shared with the tests.
NODE_JVM = ["-Xms64m", "-Xmx320m", "-XX:+UseSerialGC", "-XX:MaxMetaspaceSize=128m",
            "-XX:ReservedCodeCacheSize=64m", "-Xss512k", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true"]
# The JVM of a short-lived tool: starts fast, small.
TOOL_JVM = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]

# The names of bin/*.sh for the Kafka tools the tests use, and their main classes.
TOOLS = {
    "kafka-storage": "kafka.tools.StorageTool",
    "kafka-configs": "kafka.admin.ConfigCommand",
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "kafka-reassign-partitions": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
}

NODE_LOG4J = """<?xml version="1.0" encoding="UTF-8"?>
<!-- A Kafka node of the test cluster: INFO to stdout, which cluster.py appends to server.log. -->
<Configuration status="warn">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
  </Loggers>
</Configuration>
"""

TOOL_LOG4J = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Kafka tools run by cluster.py: warnings and errors to stderr, like bin/*.sh. -->
<Configuration status="warn">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
"""


class ClusterError(Exception):
    pass


def log(message):
    print(f"[kafka-cluster] {message}", file=sys.stderr, flush=True)


# --- ports -------------------------------------------------------------------------------------

def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_ports(count):
    """`count` free loopback ports below the ephemeral range (or anywhere, when it starts low)."""
    low, _ = ephemeral_range()
    ports = set()
    if low > 12000:
        for _ in range(1000):
            if len(ports) == count:
                break
            port = random.randrange(10000, low)
            if port not in ports and port_is_free(port):
                ports.add(port)
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.add(s.getsockname()[1])
    return list(ports)


# --- a minimal Kafka client: Metadata v4 -------------------------------------------------------

def _string(data, pos):
    (length,) = struct.unpack_from(">h", data, pos)
    pos += 2
    if length < 0:
        return None, pos
    return data[pos:pos + length].decode(), pos + length


def metadata(port, timeout=5.0):
    """Asks the node on `port` for Metadata (v4, every topic): {'brokers': {id: (host, port)},
    'controller': id, 'cluster_id': str, 'topics': {name: {partition: (leader, replicas, isr)}}}.
    Only brokers that are up and unfenced are listed. Raises OSError when it cannot ask."""
    client_id = b"kaos-cluster-py"
    body = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">ib", -1, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        header = _read_exactly(s, 4)
        (size,) = struct.unpack(">i", header)
        data = _read_exactly(s, size)
    pos = 4  # correlation id
    pos += 4  # throttle time
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    brokers = {}
    for _ in range(count):
        (node_id,) = struct.unpack_from(">i", data, pos)
        host, pos = _string(data, pos + 4)
        (broker_port,) = struct.unpack_from(">i", data, pos)
        _rack, pos = _string(data, pos + 4)
        brokers[node_id] = (host, broker_port)
    cluster_id, pos = _string(data, pos)
    (controller,) = struct.unpack_from(">i", data, pos)
    pos += 4
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    topics = {}
    for _ in range(count):
        pos += 2  # error code
        name, pos = _string(data, pos)
        pos += 1  # is internal
        (partitions,) = struct.unpack_from(">i", data, pos)
        pos += 4
        topic = topics.setdefault(name, {})
        for _ in range(partitions):
            _error, index, leader = struct.unpack_from(">hii", data, pos)
            pos += 10
            lists = []
            for _ in range(2):
                (n,) = struct.unpack_from(">i", data, pos)
                pos += 4
                lists.append(list(struct.unpack_from(f">{n}i", data, pos)))
                pos += 4 * n
            topic[index] = (leader, lists[0], lists[1])
    return {"brokers": brokers, "controller": controller, "cluster_id": cluster_id, "topics": topics}


def _read_exactly(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# --- TLS ---------------------------------------------------------------------------------------

# The listener name of the TLS client listener (Kafka's property prefix: listener.name.tls.).
TLS_LISTENER = "TLS"


def _openssl(directory, *args):
    try:
        result = subprocess.run(["openssl", *args], cwd=directory, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ClusterError("the openssl CLI is missing (apt-get install openssl), or pass --no-tls") from None
    if result.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def make_certs(directory):
    """A CA (ca.pem, ca.key) and a server certificate it signs for DNS:localhost,IP:127.0.0.1
    (server.pem, server.key: unencrypted PKCS#8) in `directory`."""
    os.makedirs(directory, exist_ok=True)
    files = {
        "ca.cnf": "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
                  "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n",
        "server.cnf": "[req]\ndistinguished_name = dn\n[dn]\n",
        "server.ext": "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
                      "extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n",
    }
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
    _openssl(directory, "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "7",
             "-subj", "/CN=kaos-kafka-cluster-ca", "-config", "ca.cnf", "-extensions", "v3_ca",
             "-keyout", "ca.key", "-out", "ca.pem")
    _openssl(directory, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-config", "server.cnf", "-keyout", "server.key", "-out", "server.csr")
    _openssl(directory, "x509", "-req", "-days", "7", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", str(random.randrange(1, 2 ** 62)), "-extfile", "server.ext", "-out", "server.pem")


def tls_setup(directory, tls_dir):
    """The TLS files of a cluster in `directory`: those of `tls_dir` (ca.pem, server.pem,
    server.key), else new ones made in DIR/tls. Writes DIR/tls/keystore.pem (Kafka's PEM
    keystore: the key, then the certificate chain) and DIR/tls/client-ssl.properties."""
    out = os.path.join(directory, "tls")
    generated = tls_dir is None
    if generated:
        make_certs(out)
        source = out
    else:
        source = os.path.abspath(tls_dir)
        os.makedirs(out, exist_ok=True)
    ca, cert, key = (os.path.join(source, name) for name in ("ca.pem", "server.pem", "server.key"))
    for path in (ca, cert, key):
        if not os.path.isfile(path):
            raise ClusterError(f"{path} is missing: --tls-dir needs ca.pem, server.pem and server.key")
    with open(key) as f:
        key_text = f.read()
    if "-----BEGIN PRIVATE KEY-----" not in key_text:
        raise ClusterError(f"{key}: Kafka's PEM keystore takes an unencrypted PKCS#8 key (BEGIN PRIVATE KEY); "
                           f"convert it with `openssl pkcs8 -topk8 -nocrypt -in {key}`")
    with open(cert) as f:
        chain = f.read()
    keystore = os.path.join(out, "keystore.pem")
    with open(keystore, "w") as f:
        f.write(key_text.rstrip("\n") + "\n" + chain)
    client_properties = os.path.join(out, "client-ssl.properties")
    with open(client_properties, "w") as f:
        f.write(f"# A Java client of the TLS listeners (e.g. a tool's --command-config).\n"
                f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={ca}\n")
    return {"ca": ca, "cert": cert, "key": key, "keystore": keystore, "client_properties": client_properties,
            "generated": generated}


# --- SASL --------------------------------------------------------------------------------------

# The listener names of the SASL client listeners (property prefixes listener.name.sasl. and
# listener.name.sasltls.).
SASL_LISTENER = "SASL"
SASL_TLS_LISTENER = "SASLTLS"
SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
SCRAM_MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512"]
# Every user logs in with PLAIN and both SCRAMs; kaos is for a proxy that logs in itself.
SASL_USERS = {"alice": "alice-secret", "bob": "bob-secret", "kaos": "kaos-secret"}
# The user of the Java client configs in cluster.json's sasl.client_properties.
SASL_CLIENT_USER = "alice"


def _jaas_quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sasl_listener_properties(listener, tls=None):
    """The server.properties lines of SASL client listener `listener`: its mechanisms and their
    JAAS configs, and with `tls` (tls_setup's files) its PEM stores."""
    prefix = f"listener.name.{listener.lower()}."
    plain_users = " ".join(f"user_{name}={_jaas_quote(password)}" for name, password in SASL_USERS.items())
    lines = [
        f"{prefix}sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}",
        f"{prefix}plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f"{plain_users};",
        *(f"{prefix}{mechanism.lower()}.sasl.jaas.config="
          f"org.apache.kafka.common.security.scram.ScramLoginModule required;" for mechanism in SCRAM_MECHANISMS),
        # Kafka 4.1 takes unsecured tokens with no more than this: the server callback handler is
        # then OAuthBearerUnsecuredValidatorCallbackHandler, no allow-list property is involved.
        # The sub option names the broker's own token (it logs "Retrieved token with principal
        # kafka-broker"); brokers start and validate clients' tokens without it too.
        f"{prefix}oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
        f'required unsecuredLoginStringClaim_sub="kafka-broker";',
    ]
    if tls:
        lines += [f"{prefix}ssl.keystore.type=PEM", f"{prefix}ssl.keystore.location={tls['keystore']}",
                  f"{prefix}ssl.truststore.type=PEM", f"{prefix}ssl.truststore.location={tls['ca']}",
                  f"{prefix}ssl.client.auth=none"]
    return "\n".join(lines) + "\n"


def sasl_client_jaas(mechanism, user, password):
    if mechanism == "PLAIN":
        module = "org.apache.kafka.common.security.plain.PlainLoginModule"
    elif mechanism in SCRAM_MECHANISMS:
        module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    elif mechanism == "OAUTHBEARER":
        # Kafka's unsecured login callback handler (the client's default) makes the token.
        return ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                f"unsecuredLoginStringClaim_sub={_jaas_quote(user)};")
    else:
        raise ClusterError(f"no SASL mechanism {mechanism} (mechanisms: {SASL_MECHANISMS})")
    return f"{module} required username={_jaas_quote(user)} password={_jaas_quote(password)};"


def sasl_setup(directory, tls):
    """DIR/sasl/client-<mechanism>.properties (SASL_PLAINTEXT) and, with `tls` (tls_setup's
    files), DIR/sasl/client-tls-<mechanism>.properties (SASL_SSL): Java client configs logging
    in as SASL_CLIENT_USER. Returns cluster.json's `sasl`."""
    out = os.path.join(directory, "sasl")
    os.makedirs(out, exist_ok=True)
    user = SASL_CLIENT_USER
    plain, secure = {}, {}
    for mechanism in SASL_MECHANISMS:
        jaas = sasl_client_jaas(mechanism, user, SASL_USERS[user])
        for protocol, files, name in (("SASL_PLAINTEXT", plain, f"client-{mechanism.lower()}.properties"),
                                      ("SASL_SSL", secure, f"client-tls-{mechanism.lower()}.properties")):
            if protocol == "SASL_SSL" and not tls:
                continue
            path = os.path.join(out, name)
            with open(path, "w") as f:
                f.write(f"# A Java client of the {protocol} listeners as {user} with {mechanism} "
                        f"(e.g. a tool's --command-config).\nsecurity.protocol={protocol}\n"
                        f"sasl.mechanism={mechanism}\nsasl.jaas.config={jaas}\n")
                if protocol == "SASL_SSL":
                    f.write(f"ssl.truststore.type=PEM\nssl.truststore.location={tls['ca']}\n")
            files[mechanism] = path
    return {"users": dict(SASL_USERS), "mechanisms": list(SASL_MECHANISMS), "client_properties": plain,
            "tls_client_properties": secure if tls else None}


class SaslError(Exception):
    """A SASL login the broker refused (or could not do): the error code and message it sent."""


def _kafka_call(sock, api_key, version, body, correlation_id):
    """One request with header v1 (every SASL request this file sends is not flexible); the
    response after its correlation id."""
    client_id = b"kaos-cluster-py"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    (size,) = struct.unpack(">i", _read_exactly(sock, 4))
    data = _read_exactly(sock, size)
    (got,) = struct.unpack_from(">i", data, 0)
    if got != correlation_id:
        raise OSError(f"correlation id {got}, expected {correlation_id}")
    return data[4:]


def _sasl_authenticate(sock, token, correlation_id):
    """SaslAuthenticate v1: the server's token, or SaslError."""
    data = _kafka_call(sock, 36, 1, struct.pack(">i", len(token)) + token, correlation_id)
    (error,) = struct.unpack_from(">h", data, 0)
    message, pos = _string(data, 2)
    (length,) = struct.unpack_from(">i", data, pos)
    if error:
        raise SaslError(f"SaslAuthenticate error {error}: {message}")
    return data[pos + 4:pos + 4 + max(length, 0)]


def scram_login(port, user, password, mechanism="SCRAM-SHA-512", timeout=5.0):
    """Logs in as `user` with SCRAM (RFC 5802, no channel binding) on the SASL_PLAINTEXT listener
    on `port`: SaslHandshake v1, then SaslAuthenticate. Returns when the broker accepted the
    proof and proved it knows the credential; raises SaslError when it refused, OSError when it
    could not be asked."""
    import base64
    import hashlib
    import hmac
    hash_name = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        name = mechanism.encode()
        data = _kafka_call(s, 17, 1, struct.pack(">h", len(name)) + name, 1)
        (error,) = struct.unpack_from(">h", data, 0)
        if error:
            raise SaslError(f"SaslHandshake {mechanism}: error {error}")
        nonce = base64.b64encode(os.urandom(18)).decode()
        escaped = user.replace("=", "=3D").replace(",", "=2C")
        client_first = f"n={escaped},r={nonce}"
        server_first = _sasl_authenticate(s, f"n,,{client_first}".encode(), 2).decode()
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        if not fields.get("r", "").startswith(nonce):
            raise SaslError(f"SCRAM: the server's nonce does not extend ours: {server_first}")
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", hash_name).digest()
        stored_key = hashlib.new(hash_name, client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{client_first},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hash_name).digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
        server_final = _sasl_authenticate(s, f"{without_proof},p={proof}".encode(), 3).decode()
        server_key = hmac.new(salted, b"Server Key", hash_name).digest()
        expected = base64.b64encode(hmac.new(server_key, auth_message, hash_name).digest()).decode()
        if server_final != f"v={expected}":
            raise SaslError(f"SCRAM: the server's signature does not verify: {server_final}")


# --- processes ---------------------------------------------------------------------------------

def start_ticks(pid):
    """When `pid` started (clock ticks after boot), or None when it does not run (or is a zombie).
    With the pid, it names one process: a pid the kernel hands to something else later has
    another start time, so it is never signalled."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is the state (field 3 of stat), fields[19] the start time (field 22).
    return None if fields[0] in ("Z", "X") else int(fields[19])


def process_alive(pid, ticks):
    return pid is not None and ticks is not None and start_ticks(pid) == ticks


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def terminate(processes, grace):
    """SIGTERM each (pid, start ticks) that is still ours, SIGKILL those still alive after `grace`
    seconds, and wait (bounded) for them to go."""
    alive = [(pid, ticks) for pid, ticks in processes if process_alive(pid, ticks)]
    for pid, _ in alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [(pid, ticks) for pid, ticks in alive if process_alive(pid, ticks)]
    for pid, _ in alive:
        log(f"pid {pid} still up {grace:.0f} s after SIGTERM: SIGKILL")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [(pid, ticks) for pid, ticks in alive if process_alive(pid, ticks)]
    if alive:
        raise ClusterError(f"processes {[pid for pid, _ in alive]} survived SIGKILL")


def java():
    home = os.environ.get("JAVA_HOME")
    return os.path.join(home, "bin", "java") if home else "java"


def default_libs():
    cache = os.environ.get("KAOS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kaos")
    version = os.environ.get("KAFKA_VERSION")
    if version:
        return os.path.join(cache, f"kafka-{version}", "libs")
    found = sorted(d for d in os.listdir(cache) if d.startswith("kafka-")) if os.path.isdir(cache) else []
    if not found:
        raise ClusterError(f"no Kafka jars in {cache}: run `make kafka` (or pass --libs)")
    return os.path.join(cache, found[-1], "libs")


# --- the cluster -------------------------------------------------------------------------------

class Cluster:
    """A cluster described by DIR/cluster.json."""

    def __init__(self, info):
        self.info = info
        self.dir = info["dir"]

    @staticmethod
    def json_path(directory):
        return os.path.join(directory, "cluster.json")

    @classmethod
    def load(cls, directory):
        path = cls.json_path(directory)
        try:
            with open(path) as f:
                return cls(json.load(f))
        except FileNotFoundError:
            raise ClusterError(f"{path} does not exist: no cluster was started in {directory}") from None

    def save(self):
        path = self.json_path(self.dir)
        with open(path + ".tmp", "w") as f:
            json.dump(self.info, f, indent=2)
            f.write("\n")
        os.replace(path + ".tmp", path)

    @property
    def bootstrap(self):
        return self.info["bootstrap"]

    @property
    def tls_bootstrap(self):
        """Every node's TLS listener (`127.0.0.1:P1,...`), or None for a cluster without TLS."""
        return self.info.get("tls_bootstrap")

    @property
    def tls_ca(self):
        """The CA (PEM) of the TLS listeners' certificate, or None for a cluster without TLS."""
        return (self.info.get("tls") or {}).get("ca")

    @property
    def sasl_bootstrap(self):
        """Every node's SASL_PLAINTEXT listener (`127.0.0.1:P1,...`)."""
        return self.info["sasl_bootstrap"]

    @property
    def sasl_tls_bootstrap(self):
        """Every node's SASL_SSL listener (`127.0.0.1:P1,...`), or None for a cluster without TLS."""
        return self.info.get("sasl_tls_bootstrap")

    @property
    def sasl_users(self):
        """{name: password} of the users who log in with PLAIN and SCRAM (OAUTHBEARER takes any name)."""
        return dict(self.info["sasl"]["users"])

    def sasl_client_properties(self, mechanism, tls=False):
        """A Java client config (for a tool's --command-config) logging in as alice with
        `mechanism` over SASL_PLAINTEXT, or SASL_SSL with `tls`."""
        files = self.info["sasl"]["tls_client_properties" if tls else "client_properties"]
        if files is None:
            raise ClusterError(f"the cluster in {self.dir} has no SASL_SSL listeners (started with --no-tls)")
        return files[mechanism]

    def sasl_port(self, node_id, tls=False):
        return self.node(node_id)["sasl_tls_port" if tls else "sasl_port"]

    @property
    def node_ids(self):
        return [node["id"] for node in self.info["nodes"]]

    def node(self, node_id):
        for node in self.info["nodes"]:
            if node["id"] == node_id:
                return node
        raise ClusterError(f"no node {node_id} (nodes: {self.node_ids})")

    def port(self, node_id):
        return self.node(node_id)["port"]

    def classpath(self):
        return os.path.join(self.info["libs"], "*")

    # -- creating --

    @classmethod
    def create(cls, directory, nodes, libs, tls=True, tls_dir=None, client_port=None):
        directory = os.path.abspath(directory)
        libs = os.path.abspath(libs)
        if not os.path.isdir(libs) or not any(name.startswith("kafka_") for name in os.listdir(libs)):
            raise ClusterError(f"no Kafka jars in {libs}: run `make kafka`")
        if os.path.exists(cls.json_path(directory)):
            raise ClusterError(f"{cls.json_path(directory)} exists: stop that cluster and use a fresh dir")
        os.makedirs(directory, exist_ok=True)
        tls_files = tls_setup(directory, tls_dir) if tls else None
        sasl = sasl_setup(directory, tls_files)
        names = ["port", "internal_port", "controller_port", "sasl_port",
                 *(["tls_port", "sasl_tls_port"] if tls else [])]
        picked = [port for port in pick_ports(len(names) * nodes + 1) if port != client_port]
        ports = iter(picked)
        infos = []
        for i in range(nodes):
            node_id = i + 1
            node_dir = os.path.join(directory, f"node-{node_id}")
            infos.append({
                "id": node_id,
                **{name: next(ports) for name in names},
                **({"port": client_port} if client_port and nodes == 1 else {}),
                "pid": None,
                "dir": node_dir,
                "config": os.path.join(node_dir, "server.properties"),
                "log": os.path.join(node_dir, "server.log"),
                "data": os.path.join(node_dir, "data"),
            })
        info = {
            "dir": directory,
            "libs": libs,
            "cluster_id": None,
            "bootstrap": ",".join(f"127.0.0.1:{n['port']}" for n in infos),
        }
        if tls:
            info["tls_bootstrap"] = ",".join(f"127.0.0.1:{n['tls_port']}" for n in infos)
            info["tls"] = tls_files
        info["sasl_bootstrap"] = ",".join(f"127.0.0.1:{n['sasl_port']}" for n in infos)
        info["sasl_tls_bootstrap"] = ",".join(f"127.0.0.1:{n['sasl_tls_port']}" for n in infos) if tls else None
        info["sasl"] = sasl
        info["nodes"] = infos
        cluster = cls(info)
        for path, text in ((cluster.node_log4j(), NODE_LOG4J), (cluster.tool_log4j(), TOOL_LOG4J)):
            with open(path, "w") as f:
                f.write(text)
        voters = ",".join(f"{n['id']}@127.0.0.1:{n['controller_port']}" for n in infos)
        for node in infos:
            os.makedirs(node["dir"], exist_ok=True)
            with open(node["config"], "w") as f:
                f.write(node_properties(node, voters, nodes, tls_files))
        return cluster

    def node_log4j(self):
        return os.path.join(self.dir, "log4j2-node.xml")

    def tool_log4j(self):
        return os.path.join(self.dir, "log4j2-tool.xml")

    def format(self):
        """Formats every node's storage with one new cluster id, and the SCRAM credentials of
        SASL_USERS in its bootstrap metadata (no JVM more than formatting takes anyway)."""
        cluster_id = self.tool_output("kafka-storage", ["random-uuid"]).strip()
        self.info["cluster_id"] = cluster_id
        scram = []
        for name, password in self.info["sasl"]["users"].items():
            for mechanism in SCRAM_MECHANISMS:
                scram += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        for node in self.info["nodes"]:
            result = self.tool("kafka-storage", ["format", "-t", cluster_id, "-c", node["config"], *scram],
                               capture=True)
            if result.returncode != 0:
                raise ClusterError(f"formatting node {node['id']} failed:\n{result.stdout}{result.stderr}")
        self.save()

    # -- running nodes --

    def _spawn(self, node):
        log_file = open(node["log"], "ab")
        try:
            log_file.write(f"\n===== cluster.py starts node {node['id']} at {time.ctime()} =====\n".encode())
            log_file.flush()
            offset = log_file.tell()
            args = [java(), *NODE_JVM, f"-Dlog4j2.configurationFile={self.node_log4j()}",
                    f"-Dkafka.logs.dir={node['dir']}", "-cp", self.classpath(), "kafka.Kafka", node["config"]]
            child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                     cwd=node["dir"], start_new_session=True)
        finally:
            log_file.close()
        node["pid"] = child.pid
        # Read at once: the child is ours until reaped, and this process reaps it only on exit.
        node["start_ticks"] = start_ticks(child.pid)
        child.returncode = 0  # the node outlives this process: no ResourceWarning for it
        return offset

    def running(self, node):
        return process_alive(node["pid"], node.get("start_ticks"))

    def _wait_ready(self, pending, timeout, want_brokers):
        """Waits until each node in `pending` ({id: log offset}) logged STARTED after its offset,
        and Metadata from each lists `want_brokers`."""
        deadline = time.monotonic() + timeout
        waiting = dict(pending)
        while True:
            for node_id, offset in list(waiting.items()):
                node = self.node(node_id)
                if not self.running(node):
                    raise ClusterError(f"node {node_id} exited while starting; its log:\n{tail(node['log'])}")
                if log_contains(node["log"], offset, STARTED):
                    try:
                        listed = set(metadata(node["port"])["brokers"])
                    except (OSError, struct.error):
                        continue
                    if not all(accepts(node[key]) for key in ("tls_port", "sasl_port", "sasl_tls_port")
                               if node.get(key)):
                        continue
                    if want_brokers <= listed:
                        del waiting[node_id]
            if not waiting:
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- node {i} ({self.node(i)['log']}):\n{tail(self.node(i)['log'])}"
                                 for i in waiting)
                raise ClusterError(f"nodes {sorted(waiting)} not ready after {timeout:.0f} s\n{logs}")
            time.sleep(0.25)

    def start(self, timeout):
        """Starts every node at once (a node waits for a quorum majority before it serves)."""
        begin = time.monotonic()
        offsets = {node["id"]: self._spawn(node) for node in self.info["nodes"]}
        self.save()
        try:
            self._wait_ready(offsets, timeout, set(self.node_ids))
            self.wait_scram_logins(self.sasl_users, SCRAM_MECHANISMS, begin + timeout)
        except BaseException:
            self.stop()
            raise
        self.info["started_in_seconds"] = round(time.monotonic() - begin, 1)
        self.save()

    def wait_scram_logins(self, users, mechanisms, deadline):
        """Waits until each of `users` ({name: password}) logs in with each of `mechanisms` on
        every running node's SASL listener (a credential reaches each broker through the
        metadata log)."""
        pending = [(node, name, password, mechanism) for node in self.info["nodes"] if self.running(node)
                   for name, password in users.items() for mechanism in mechanisms]
        while pending:
            failed = []
            for node, name, password, mechanism in pending:
                try:
                    scram_login(node["sasl_port"], name, password, mechanism)
                except (SaslError, OSError, struct.error, ValueError, KeyError) as error:
                    failed.append((node, name, password, mechanism, error))
            if not failed:
                return
            if time.monotonic() > deadline:
                node, name, _, mechanism, error = failed[0]
                raise ClusterError(f"{len(failed)} SCRAM logins still fail, e.g. {name} with {mechanism} on node "
                                   f"{node['id']}: {error}")
            pending = [entry[:4] for entry in failed]
            time.sleep(0.2)

    def add_scram_user(self, name, password, mechanism=None, timeout=60):
        """Makes (or changes) SCRAM user `name` with `kafka-configs --alter --add-config
        'SCRAM-SHA-512=[password=...]' --entity-type users --entity-name NAME` on the CLIENT
        listener, for `mechanism` (SCRAM-SHA-256 or SCRAM-SHA-512; None: both), and waits until
        the user logs in with it on every running node. Returns the seconds it took. One
        kafka-configs (a JVM) per mechanism: Kafka 4.1 refuses both in one request ("A user
        credential cannot be altered twice in the same request"). Only SCRAM: PLAIN's users are
        fixed in the JAAS config."""
        begin = time.monotonic()
        mechanisms = SCRAM_MECHANISMS if mechanism is None else [mechanism]
        for m in mechanisms:
            if m not in SCRAM_MECHANISMS:
                raise ClusterError(f"{m} is not a SCRAM mechanism ({SCRAM_MECHANISMS})")
        for m in mechanisms:
            self.tool_output("kafka-configs", ["--bootstrap-server", self.bootstrap, "--alter",
                                               "--add-config", f"{m}=[password={password}]",
                                               "--entity-type", "users", "--entity-name", name])
        self.wait_scram_logins({name: password}, mechanisms, begin + timeout)
        return time.monotonic() - begin

    def stop(self, grace=15.0):
        nodes = [node for node in self.info["nodes"] if node["pid"] is not None]
        terminate([(node["pid"], node.get("start_ticks")) for node in nodes], grace)
        for node in nodes:
            node["pid"] = None
        self.save()

    def stop_node(self, node_id, grace=30.0):
        node = self.node(node_id)
        if node["pid"] is not None:
            terminate([(node["pid"], node.get("start_ticks"))], grace)
        node["pid"] = None
        self.save()
        # Wait (bounded) until the others no longer list it, so callers see a settled cluster.
        others = [n for n in self.info["nodes"] if n["id"] != node_id and self.running(n)]
        deadline = time.monotonic() + 30
        while others and time.monotonic() < deadline:
            try:
                if node_id not in metadata(others[0]["port"])["brokers"]:
                    return
            except (OSError, struct.error):
                pass
            time.sleep(0.25)

    def start_node(self, node_id, timeout):
        """Starts a stopped node with the same config and data, then waits until it serves, every
        running node lists it, it is back in the ISR of each partition it replicates, and it leads
        the partitions it prefers again (leader.imbalance.check.interval.seconds=1): the cluster
        looks as it did before the node stopped."""
        node = self.node(node_id)
        if self.running(node):
            raise ClusterError(f"node {node_id} is running (pid {node['pid']})")
        offset = self._spawn(node)
        self.save()
        deadline = time.monotonic() + timeout
        self._wait_ready({node_id: offset}, timeout, {node_id})
        while True:
            problems = self.replication_problems(node_id)
            if not problems:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"node {node_id} serves but after {timeout:.0f} s: {problems[:5]}")
            time.sleep(0.5)

    @contextlib.contextmanager
    def stopped_node(self, node_id, timeout=120):
        """`with cluster.stopped_node(2):` stops node 2 and starts it again at the end, even when
        the block raises; one node at a time (NodeLock) across processes."""
        with NodeLock(self.dir):
            self.stop_node(node_id)
            try:
                yield node_id
            finally:
                self.start_node(node_id, timeout)

    def replication_problems(self, node_id):
        running = [n for n in self.info["nodes"] if self.running(n)]
        problems = []
        try:
            views = {n["id"]: metadata(n["port"]) for n in running}
        except (OSError, struct.error) as error:
            return [f"metadata: {error}"]
        for viewer, view in views.items():
            missing = {n["id"] for n in running} - set(view["brokers"])
            if missing:
                problems.append(f"node {viewer} does not list {sorted(missing)}")
        view = views[node_id]
        for topic, partitions in view["topics"].items():
            for index, (leader, replicas, isr) in partitions.items():
                if node_id in replicas and node_id not in isr:
                    problems.append(f"{topic}-{index}: not in ISR {isr}")
                elif replicas and replicas[0] == node_id and leader != node_id:
                    problems.append(f"{topic}-{index}: led by {leader}, not by its preferred leader")
        return problems

    # -- tools --

    def tool_command(self, name, args):
        """The command line of a Kafka tool: a main class, or a bin/*.sh name from TOOLS."""
        main = TOOLS.get(name.removesuffix(".sh"), name)
        return [java(), *TOOL_JVM, f"-Dlog4j2.configurationFile={self.tool_log4j()}",
                "-cp", self.classpath(), main, *args]

    def tool(self, name, args, capture=False, timeout=300, input=None):
        """Runs a Kafka tool with the cluster's jars (stdin: `input`, else nothing)."""
        return subprocess.run(self.tool_command(name, args), stdin=None if input is not None else subprocess.DEVNULL,
                              input=input, capture_output=capture, text=True, timeout=timeout)

    def tool_output(self, name, args):
        result = self.tool(name, args, capture=True)
        if result.returncode != 0:
            raise ClusterError(f"{name} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout


def node_properties(node, voters, nodes, tls=None):
    """A node's server.properties; `tls` (tls_setup's files) adds the TLS and SASLTLS client
    listeners (SASL is always there)."""
    replication = min(3, nodes)
    min_isr = 2 if replication == 3 else 1
    client = f"CLIENT://127.0.0.1:{node['port']}"
    internal = f"INTERNAL://127.0.0.1:{node['internal_port']}"
    if tls:
        client += f",{TLS_LISTENER}://127.0.0.1:{node['tls_port']}"
    client += f",{SASL_LISTENER}://127.0.0.1:{node['sasl_port']}"
    if tls:
        client += f",{SASL_TLS_LISTENER}://127.0.0.1:{node['sasl_tls_port']}"
    prefix = f"listener.name.{TLS_LISTENER.lower()}."
    tls_lines = f"""
# The TLS-only client listener: PEM stores, no client certificate asked for.
{prefix}ssl.keystore.type=PEM
{prefix}ssl.keystore.location={tls['keystore']}
{prefix}ssl.truststore.type=PEM
{prefix}ssl.truststore.location={tls['ca']}
{prefix}ssl.client.auth=none
""" if tls else ""
    sasl_lines = ("\n# The SASL client listeners: PLAIN, SCRAM and OAUTHBEARER (unsecured tokens), no authorizer.\n"
                  + sasl_listener_properties(SASL_LISTENER)
                  + (sasl_listener_properties(SASL_TLS_LISTENER, tls) if tls else ""))
    protocols = ",".join(["CLIENT:PLAINTEXT", *([f"{TLS_LISTENER}:SSL"] if tls else []),
                          f"{SASL_LISTENER}:SASL_PLAINTEXT", *([f"{SASL_TLS_LISTENER}:SASL_SSL"] if tls else []),
                          "INTERNAL:PLAINTEXT", "CONTROLLER:PLAINTEXT"])
    return f"""# Node {node['id']} of a {nodes}-node test cluster, written by tests/kafka/cluster.py.
process.roles=broker,controller
node.id={node['id']}
controller.quorum.voters={voters}
listeners={client},{internal},CONTROLLER://127.0.0.1:{node['controller_port']}
advertised.listeners={client},{internal}
listener.security.protocol.map={protocols}
inter.broker.listener.name=INTERNAL{tls_lines}{sasl_lines}
controller.listener.names=CONTROLLER
log.dirs={node['data']}

# Internal topics: on every node, few partitions.
offsets.topic.replication.factor={replication}
offsets.topic.num.partitions=3
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min_isr}
share.coordinator.state.topic.num.partitions=3
default.replication.factor={replication}
num.partitions=1
# Tests create their topics (as with tansu and the compose file).
auto.create.topics.enable=false

# A small machine shared with the tests.
num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=2097152
# Compacted topics (kaos's --rules-topic test) are cleaned within a second, not 15.
log.cleaner.backoff.ms=500
group.initial.rebalance.delay.ms=0

# After a node comes back it leads its preferred partitions again within seconds (default 300 s).
leader.imbalance.check.interval.seconds=1
# A restarted node cannot register again before its old session expires (the controller answers
# DUPLICATE_BROKER_REGISTRATION until then, even after a clean shutdown): 9 s by default.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
"""


def accepts(port):
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def log_contains(path, offset, text):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return text.encode() in f.read()
    except OSError:
        return False


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as error:
        return f"({error})"


class NodeLock:
    """DIR/nodes.lock, held (flock) while a test has a node down, so two tests never stop nodes
    at the same time (two of three down is no quorum). Rust's KafkaCluster takes the same lock."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "nodes.lock")
        self.file = None

    def __enter__(self):
        self.file = open(self.path, "a")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


# --- command line ------------------------------------------------------------------------------

def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="format and start a cluster in DIR")
    start.add_argument("--dir", required=True)
    start.add_argument("--nodes", type=int, default=3)
    start.add_argument("--libs", help="the jars (default: $KAOS_CACHE/kafka-$KAFKA_VERSION/libs)")
    start.add_argument("--timeout", type=float, default=180)
    start.add_argument("--client-port", type=int, help="the CLIENT listener's port (with --nodes 1; default: a free one)")
    tls = start.add_mutually_exclusive_group()
    tls.add_argument("--tls-dir", help="ca.pem, server.pem and server.key (PKCS#8) for the TLS listeners "
                                       "(default: made with openssl into DIR/tls)")
    tls.add_argument("--no-tls", action="store_true", help="no TLS listener (CLIENT, INTERNAL and CONTROLLER only)")
    stop = commands.add_parser("stop", help="stop every node")
    stop.add_argument("--dir", required=True)
    stop.add_argument("--grace", type=float, default=15)
    for name in ("stop-node", "start-node"):
        command = commands.add_parser(name)
        command.add_argument("--dir", required=True)
        command.add_argument("--id", type=int, required=True)
        command.add_argument("--timeout", type=float, default=120)
    status = commands.add_parser("status")
    status.add_argument("--dir", required=True)
    scram = commands.add_parser("scram-user", help="make a SCRAM user with kafka-configs, wait until it logs in")
    scram.add_argument("--dir", required=True)
    scram.add_argument("--name", required=True)
    scram.add_argument("--password", required=True)
    scram.add_argument("--mechanism", choices=SCRAM_MECHANISMS, help="default: both")
    scram.add_argument("--timeout", type=float, default=60)
    tool = commands.add_parser("tool", help="run a Kafka tool: a main class or a bin/*.sh name")
    tool.add_argument("--dir", required=True)
    tool.add_argument("name")
    tool.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)

    try:
        if options.command == "start":
            begin = time.monotonic()
            if options.client_port and options.nodes != 1:
                raise ClusterError("--client-port needs --nodes 1")
            cluster = Cluster.create(options.dir, options.nodes, options.libs or default_libs(),
                                     tls=not options.no_tls, tls_dir=options.tls_dir, client_port=options.client_port)
            cluster.format()
            formatted = time.monotonic() - begin
            cluster.start(options.timeout)
            rss = ", ".join(f"node {n['id']} pid {n['pid']} {rss_kib(n['pid']) // 1024} MiB"
                            for n in cluster.info["nodes"])
            log(f"{options.nodes} nodes up in {time.monotonic() - begin:.1f} s (format {formatted:.1f} s, "
                f"start {cluster.info['started_in_seconds']} s); bootstrap {cluster.bootstrap}"
                + (f"; TLS bootstrap {cluster.tls_bootstrap} (CA {cluster.tls_ca})" if cluster.tls_bootstrap else "")
                + f"; SASL bootstrap {cluster.sasl_bootstrap}"
                + (f"; SASL_SSL bootstrap {cluster.sasl_tls_bootstrap}" if cluster.sasl_tls_bootstrap else "")
                + f"; RSS: {rss}")
            print(Cluster.json_path(cluster.dir))
        elif options.command == "stop":
            Cluster.load(options.dir).stop(options.grace)
        elif options.command == "stop-node":
            Cluster.load(options.dir).stop_node(options.id)
        elif options.command == "start-node":
            begin = time.monotonic()
            Cluster.load(options.dir).start_node(options.id, options.timeout)
            log(f"node {options.id} back in {time.monotonic() - begin:.1f} s")
        elif options.command == "status":
            cluster = Cluster.load(options.dir)
            for node in cluster.info["nodes"]:
                up = cluster.running(node)
                rss = f", RSS {rss_kib(node['pid']) // 1024} MiB" if up else ""
                ports = "".join(f" {key} {node[key]}" for key in ("tls_port", "sasl_port", "sasl_tls_port")
                                if node.get(key))
                print(f"node {node['id']}: {'up' if up else 'down'} pid {node['pid']} "
                      f"port {node['port']}{ports}{rss}")
                if up:
                    try:
                        view = metadata(node["port"])
                        print(f"  lists brokers {sorted(view['brokers'])}, controller {view['controller']}, "
                              f"{len(view['topics'])} topics")
                    except (OSError, struct.error) as error:
                        print(f"  metadata: {error}")
        elif options.command == "scram-user":
            seconds = Cluster.load(options.dir).add_scram_user(options.name, options.password, options.mechanism,
                                                               options.timeout)
            log(f"SCRAM user {options.name} ({options.mechanism or 'both mechanisms'}) logs in after {seconds:.1f} s")
        elif options.command == "tool":
            args = options.args[1:] if options.args[:1] == ["--"] else options.args
            # Runs in the foreground with this process's stdin (the console producer reads it).
            return subprocess.run(Cluster.load(options.dir).tool_command(options.name, args)).returncode
    except ClusterError as error:
        log(str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
