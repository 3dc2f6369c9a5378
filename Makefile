# kaos: `make run` starts a local broker with kaos in front of it; `make test` runs every test.
#
# Everything the tests and benchmarks need is installed on first use, idempotently, into
# $(KAOS_CACHE) (outside the clone): tansu 0.6.0, librdkafka's rdkafka_performance and
# rdkafka_example, a Python venv with confluent-kafka and kafka-python, and Apache Kafka's jars
# (the version docker-compose.yaml runs) for the 3-node cluster `make test` starts.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
KAOS_CACHE ?= $(HOME)/.cache/kaos
export KAOS_CACHE

TANSU := $(KAOS_CACHE)/tansu/bin/tansu
LIBRDKAFKA := $(KAOS_CACHE)/librdkafka-2.12.1-ssl
RDKAFKA_PERFORMANCE := $(LIBRDKAFKA)/examples/rdkafka_performance
VENV := $(KAOS_CACHE)/venv
VENV_STAMP := $(VENV)/.kaos-requirements
CLIENT_STAMP := $(VENV)/.kaos-client
NODE_PREFIX := $(KAOS_CACHE)/node
PLAYWRIGHT := $(NODE_PREFIX)/node_modules/playwright-core/package.json
CHROMIUM := /usr/bin/chromium
# The TLS tests put Debian's stunnel4 in front of tansu and make their certificates with openssl.
STUNNEL := /usr/bin/stunnel4
# The container test builds and runs the image with Debian's podman and runc, on a Debian
# bookworm base made with debootstrap (no registry is reachable to pull one from).
PODMAN := /usr/bin/podman
CONTAINER_BASE := $(KAOS_CACHE)/container/debian-bookworm-minbase.tar
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# The Helm chart's tests: helm from the Go module proxy, and the Prometheus Operator's
# ServiceMonitor CRD (its schema checks the chart's ServiceMonitor) from that operator's module.
HELM_VERSION := v4.3.2
HELM := $(KAOS_CACHE)/go/bin/helm
PROMETHEUS_OPERATOR := github.com/prometheus-operator/prometheus-operator@v0.94.0
SERVICEMONITOR_CRD := $(KAOS_CACHE)/helm/servicemonitors-crd.yaml
GO_CACHE_ENV := GOBIN=$(KAOS_CACHE)/go/bin GOMODCACHE=$(KAOS_CACHE)/go/mod GOFLAGS=-modcacherw
TOXIPROXY := $(KAOS_CACHE)/go/bin/toxiproxy-server
KAOS := target/release/kaos
LOADTEST := target/release/kaos-loadtest
# Apache Kafka from Maven Central (tests/kafka/pom.xml), the version of docker-compose.yaml's image.
KAFKA_VERSION := $(shell sed -n 's|^ *image: *apache/kafka:\([0-9][0-9.]*\).*|\1|p' docker-compose.yaml | head -n 1)
KAFKA_LIBS := $(KAOS_CACHE)/kafka-$(KAFKA_VERSION)/libs
KAFKA_STAMP := $(KAOS_CACHE)/kafka-$(KAFKA_VERSION)/.kaos-pom
KAFKA_CLUSTER := python3 tests/kafka/cluster.py

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
DIST_NAME := kaos-$(VERSION)-$(HOST_TRIPLE)
DIST_DIR := target/dist
IMAGE ?= kaos:$(VERSION)
CONTAINER_ENGINE ?= $(shell command -v podman || command -v docker)

KAFKA_PORT ?= 9092
PORT_START ?= 6969
ADMIN_ADDR ?= 127.0.0.1:8888

.PHONY: build build-kaos deps kafka test lint run demo bench bench-baseline clean-cache fuzz fuzz-check \
	dist image image-prebuilt

build:
	$(CARGO) build --release --workspace --bins

# The proxy alone, without the load tool and librdkafka: all `make run` needs. `--workspace`
# resolves features as `make build` does, so the two share every compiled crate instead of
# rebuilding kaos each time one follows the other.
build-kaos:
	$(CARGO) build --release --workspace --bin kaos

deps: $(TANSU) $(RDKAFKA_PERFORMANCE) $(VENV_STAMP) $(CLIENT_STAMP) $(PLAYWRIGHT) $(CHROMIUM) $(KAFKA_STAMP) $(STUNNEL) \
	$(PODMAN) $(CONTAINER_BASE) $(HELM) $(SERVICEMONITOR_CRD)

$(TANSU):
	mkdir -p $(KAOS_CACHE)
	@echo "Installing tansu 0.6.0 into $(KAOS_CACHE)/tansu (about 20 minutes the first time)"
	$(CARGO) install tansu@0.6.0 --locked --no-default-features --features dynostore --root $(KAOS_CACHE)/tansu

# librdkafka's own tools, built from the source the rdkafka-sys crate ships, with OpenSSL for the
# TLS benchmark (libssl-dev from apt when missing).
$(RDKAFKA_PERFORMANCE):
	@test -f /usr/include/openssl/ssl.h || (apt-get update -qq && apt-get install -y -qq libssl-dev)
	$(CARGO) fetch --quiet
	src=$$(ls -d $${CARGO_HOME:-$$HOME/.cargo}/registry/src/*/rdkafka-sys-4.10.0+2.12.1/librdkafka | head -n 1); \
	rm -rf $(LIBRDKAFKA).tmp && cp -r "$$src" $(LIBRDKAFKA).tmp; \
	cd $(LIBRDKAFKA).tmp && ./configure --enable-ssl --disable-gssapi --disable-curl --disable-zstd --disable-lz4-ext >/dev/null \
		&& $(MAKE) -j2 libs >/dev/null && $(MAKE) -C examples rdkafka_performance rdkafka_example >/dev/null
	rm -rf $(LIBRDKAFKA) && mv $(LIBRDKAFKA).tmp $(LIBRDKAFKA)

$(VENV_STAMP): tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
	cp tests/python/requirements.txt $(VENV_STAMP)

# The project's own Python client (clients/python), installed editable so its tests run what the
# repository holds; its pytest plugin gives the tests the kaos_client fixture.
$(CLIENT_STAMP): clients/python/pyproject.toml $(VENV_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e clients/python
	cp clients/python/pyproject.toml $(CLIENT_STAMP)

# Apache Kafka's jars (broker, tools, log4j2) into $(KAFKA_LIBS), once: about 5 s and 54 MB
# (plus 70 MB of Maven's own repository in $(KAOS_CACHE)/m2). Maven comes from apt when missing.
kafka: $(KAFKA_STAMP)

$(KAFKA_STAMP): tests/kafka/pom.xml
	@test -n "$(KAFKA_VERSION)" || { echo "no apache/kafka:VERSION image in docker-compose.yaml"; exit 1; }
	@command -v mvn >/dev/null || (apt-get update -qq && apt-get install -y -qq maven)
	rm -rf $(KAFKA_LIBS).tmp
	mvn -q -B -Dstyle.color=never -f tests/kafka/pom.xml -Dkafka.version=$(KAFKA_VERSION) -Dmaven.repo.local=$(KAOS_CACHE)/m2 \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(KAFKA_LIBS).tmp
	rm -rf $(KAFKA_LIBS) && mv $(KAFKA_LIBS).tmp $(KAFKA_LIBS)
	cp tests/kafka/pom.xml $(KAFKA_STAMP)

# The console's browser test: Debian's Chromium driven by npm's playwright-core (no browser download).
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

$(STUNNEL):
	apt-get update -qq && apt-get install -y -qq stunnel4 openssl

$(PODMAN):
	apt-get update -qq && apt-get install -y -qq podman runc debootstrap

# Debian bookworm's minimal base, trimmed of documentation and package lists (about 80 MB); the
# container test imports it into podman as localhost/kaos-base:bookworm-minbase.
$(CONTAINER_BASE): | $(PODMAN)
	rm -rf $(KAOS_CACHE)/container/root && mkdir -p $(KAOS_CACHE)/container
	debootstrap --variant=minbase bookworm $(KAOS_CACHE)/container/root $(DEBIAN_MIRROR) >/dev/null
	cd $(KAOS_CACHE)/container/root && rm -rf var/cache/apt/* var/lib/apt/lists/* usr/share/doc usr/share/man \
		usr/share/locale usr/share/info
	tar -C $(KAOS_CACHE)/container/root -cf $@.tmp . && mv $@.tmp $@ && rm -rf $(KAOS_CACHE)/container/root

$(HELM):
	$(GO_CACHE_ENV) go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

$(SERVICEMONITOR_CRD):
	mkdir -p $(dir $@)
	dir=$$(cd /tmp && $(GO_CACHE_ENV) go mod download -json $(PROMETHEUS_OPERATOR) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
		cp "$$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" $@.tmp
	mv $@.tmp $@

$(PLAYWRIGHT):
	mkdir -p $(NODE_PREFIX)
	cd $(NODE_PREFIX) && npm install --silent --no-audit --no-fund playwright-core@1

# One 3-node Apache Kafka cluster (tests/kafka/cluster.py) serves the whole run, Rust and Python:
# started once the tests are built, found through KAOS_KAFKA_CLUSTER, stopped at the end whatever
# happens; its directory (node logs) is removed after a pass and kept after a failure.
test: deps fuzz-check
	$(CARGO) build --release --workspace --bins
	$(CARGO) test --release --workspace --no-run
	@cluster=$$(mktemp -d "$${TMPDIR:-/tmp}/kaos-kafka.XXXXXX"); \
	trap 'status=$$?; $(KAFKA_CLUSTER) stop --dir "$$cluster" || true; \
		if [ $$status -eq 0 ]; then rm -rf "$$cluster"; else echo "Kafka cluster logs kept in $$cluster"; fi; \
		exit $$status' EXIT; \
	trap 'exit 130' INT TERM; \
	$(KAFKA_CLUSTER) start --dir "$$cluster" --libs $(KAFKA_LIBS) >/dev/null; \
	export KAOS_KAFKA_CLUSTER="$$cluster/cluster.json"; \
	echo "+ $(CARGO) test --release --workspace"; \
	$(CARGO) test --release --workspace; \
	echo "+ pytest tests/python"; \
	KAOS_BIN=$(KAOS) TANSU_BIN=$(TANSU) NODE_PREFIX=$(NODE_PREFIX) $(VENV)/bin/python -m pytest -q -p no:warnings tests/python

# Fuzz targets (fuzz/, its own workspace): `make fuzz` runs each for FUZZ_SECONDS under cargo-fuzz
# (nightly, libFuzzer, ASan), growing fuzz/corpus/TARGET from fuzz/seeds/TARGET, and fails if any
# target crashes (the input lands in fuzz/artifacts/TARGET). `make fuzz-check`, part of `make
# test`, needs neither: it builds the targets on stable, checks the seeds are what fuzz/src/lib.rs
# generates, and replays every seed through its target once.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := request_frame produce_topics response_rewrite record_batch_rewrite rule_json

fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	$(CARGO) +nightly fuzz build
	@failed=""; for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$target; \
		$(CARGO) +nightly fuzz run $$target fuzz/corpus/$$target fuzz/seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 || failed="$$failed $$target"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz targets crashed:$$failed (inputs in fuzz/artifacts/)"; exit 1; fi

fuzz-check:
	$(CARGO) build --manifest-path fuzz/Cargo.toml --bins
	$(CARGO) test --manifest-path fuzz/Cargo.toml --lib
	@for target in $(FUZZ_TARGETS); do \
		out=$$(fuzz/target/debug/$$target fuzz/seeds/$$target/* 2>&1) || { echo "$$out"; exit 1; }; \
		echo "fuzz target $$target: $$(ls fuzz/seeds/$$target | wc -l) seeds replayed"; \
	done

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# A local broker on $(KAFKA_PORT) and kaos on $(PORT_START) (admin API on $(ADMIN_ADDR)), until
# Ctrl-C stops both (demo/run.sh). The broker is a one-node Apache Kafka from the test jars where
# `java` is present (RUN_BROKER=tansu forces tansu, built on first use: about 20 minutes).
RUN_DEPS := $(if $(filter tansu,$(RUN_BROKER)),$(TANSU),$(if $(shell command -v java),$(KAFKA_STAMP),$(TANSU)))
run: $(RUN_DEPS) build-kaos
	@KAOS_CACHE=$(KAOS_CACHE) KAOS=$(KAOS) KAFKA_LIBS=$(KAFKA_LIBS) KAFKA_PORT=$(KAFKA_PORT) PORT_START=$(PORT_START) \
		ADMIN=$(ADMIN_ADDR) demo/run.sh

# A release tarball: the stripped binary, the seccomp profile and the README, with its SHA-256
# sum beside it, in $(DIST_DIR). Its files carry the last commit's time, so the same commit gives
# the same archive.
dist: build-kaos
	rm -rf $(DIST_DIR)/$(DIST_NAME) && mkdir -p $(DIST_DIR)/$(DIST_NAME)
	strip -o $(DIST_DIR)/$(DIST_NAME)/kaos $(KAOS)
	cp README.md deploy/seccomp/kaos-seccomp.json $(DIST_DIR)/$(DIST_NAME)/
	tar -C $(DIST_DIR) --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$$(git log -1 --format=%ct) \
		-cf - $(DIST_NAME) | gzip -n > $(DIST_DIR)/$(DIST_NAME).tar.gz
	cd $(DIST_DIR) && sha256sum $(DIST_NAME).tar.gz > $(DIST_NAME).tar.gz.sha256
	@echo "$(DIST_DIR)/$(DIST_NAME).tar.gz: $$(cut -d' ' -f1 $(DIST_DIR)/$(DIST_NAME).tar.gz.sha256)"

# The container image, with Docker or podman (CONTAINER_ENGINE=...): `image` compiles kaos in the
# Dockerfile's build stage (it pulls rust:1.95-bookworm and debian:bookworm-slim); `image-prebuilt`
# puts this checkout's release binary in the runtime stage instead.
image:
	$(CONTAINER_ENGINE) build -t $(IMAGE) .

image-prebuilt: build-kaos
	mkdir -p target/image && strip -o target/image/kaos $(KAOS)
	$(CONTAINER_ENGINE) build --build-arg KAOS_BINARY=prebuilt --target runtime -t $(IMAGE) .

# The seed's chaos walkthrough, step by step (demo/walkthrough.sh): the 3-node Apache Kafka
# cluster, kaos in front of it and the Kafka console tools; where `java` is missing, a local tansu
# and a Python client instead (DEMO_BROKER=tansu forces it). Either way it stops what it started.
DEMO_DEPS := $(if $(filter tansu,$(DEMO_BROKER)),$(TANSU),$(if $(shell command -v java),$(KAFKA_STAMP),$(TANSU)))
demo: $(DEMO_DEPS) $(VENV_STAMP) build
	KAOS_CACHE=$(KAOS_CACHE) KAFKA_LIBS=$(KAFKA_LIBS) KAFKA_PORT=$(KAFKA_PORT) PORT_START=$(PORT_START) \
		ADMIN=$(ADMIN_ADDR) demo/walkthrough.sh

# Every suite of benches/bench.py (under 15 minutes); the tables also land in target/bench.md. The
# kafka suite starts its own 3-node Apache Kafka cluster (tests/kafka/cluster.py) from $(KAFKA_LIBS).
bench: deps build $(TOXIPROXY)
	@command -v haproxy >/dev/null || (apt-get update -qq && apt-get install -y -qq haproxy)
	python3 benches/bench.py --kaos $(KAOS) --loadtest $(LOADTEST) --tansu $(TANSU) \
		--perf $(RDKAFKA_PERFORMANCE) --kafka-libs $(KAFKA_LIBS) --toxiproxy $(TOXIPROXY) --output target/bench.md

# Toxiproxy 2.12 (Shopify's latency toxic: the reference for latency faults), from the Go module proxy.
$(TOXIPROXY):
	$(GO_CACHE_ENV) go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0
	mv $(KAOS_CACHE)/go/bin/server $@

# Pass-through speed of the working tree against another commit, paired in one run: the proof
# that a change costs nothing. BASELINE is any git revision (default: the last commit).
BASELINE ?= HEAD
BASELINE_DIR := target/baseline-$(shell git rev-parse --short $(BASELINE) 2>/dev/null)
bench-baseline: deps build
	rm -rf $(BASELINE_DIR)/src && mkdir -p $(BASELINE_DIR)/src
	git archive $(BASELINE) | tar -x -C $(BASELINE_DIR)/src
	$(CARGO) build --release --bin kaos --manifest-path $(BASELINE_DIR)/src/Cargo.toml --target-dir $(BASELINE_DIR)/target
	python3 benches/bench.py --kaos $(KAOS) --baseline-kaos $(BASELINE_DIR)/target/release/kaos \
		--loadtest $(LOADTEST) --tansu $(TANSU) --perf $(RDKAFKA_PERFORMANCE) --suites baseline \
		--output target/bench-baseline.md

clean-cache:
	rm -rf $(KAOS_CACHE)
