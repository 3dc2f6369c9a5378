# kaos: `make run` starts a local tansu broker with kaos in front of it; `make test` runs every test.
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
KAOS := target/release/kaos
LOADTEST := target/release/kaos-loadtest
# Apache Kafka from Maven Central (tests/kafka/pom.xml), the version of docker-compose.yaml's image.
KAFKA_VERSION := $(shell sed -n 's|^ *image: *apache/kafka:\([0-9][0-9.]*\).*|\1|p' docker-compose.yaml | head -n 1)
KAFKA_LIBS := $(KAOS_CACHE)/kafka-$(KAFKA_VERSION)/libs
KAFKA_STAMP := $(KAOS_CACHE)/kafka-$(KAFKA_VERSION)/.kaos-pom
KAFKA_CLUSTER := python3 tests/kafka/cluster.py

KAFKA_PORT ?= 9092
PORT_START ?= 6969
ADMIN_ADDR ?= 127.0.0.1:8888

.PHONY: build deps kafka test lint run demo bench bench-baseline clean-cache fuzz fuzz-check

build:
	$(CARGO) build --release --workspace --bins

deps: $(TANSU) $(RDKAFKA_PERFORMANCE) $(VENV_STAMP) $(CLIENT_STAMP) $(PLAYWRIGHT) $(CHROMIUM) $(KAFKA_STAMP) $(STUNNEL)

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

# A local broker on $(KAFKA_PORT) and kaos on $(PORT_START) (admin API on $(ADMIN_ADDR)).
# Ctrl-C stops both.
run: $(TANSU) build
	@$(TANSU) broker --listener-url tcp://127.0.0.1:$(KAFKA_PORT) --advertised-listener-url tcp://127.0.0.1:$(KAFKA_PORT) \
		--storage-engine memory://tansu/ > $(KAOS_CACHE)/tansu-run.log 2>&1 & tansu=$$!; \
	trap 'kill $$tansu 2>/dev/null' EXIT; \
	echo "tansu on 127.0.0.1:$(KAFKA_PORT) (pid $$tansu, log $(KAOS_CACHE)/tansu-run.log)"; \
	$(KAOS) --bootstrap-servers 127.0.0.1:$(KAFKA_PORT) --port-start $(PORT_START) --admin-addr $(ADMIN_ADDR) || true

# The seed's chaos walkthrough, step by step (demo/walkthrough.sh): the 3-node Apache Kafka
# cluster, kaos in front of it and the Kafka console tools; where `java` is missing, a local tansu
# and a Python client instead (DEMO_BROKER=tansu forces it). Either way it stops what it started.
DEMO_DEPS := $(if $(filter tansu,$(DEMO_BROKER)),$(TANSU),$(if $(shell command -v java),$(KAFKA_STAMP),$(TANSU)))
demo: $(DEMO_DEPS) $(VENV_STAMP) build
	KAOS_CACHE=$(KAOS_CACHE) KAFKA_LIBS=$(KAFKA_LIBS) KAFKA_PORT=$(KAFKA_PORT) PORT_START=$(PORT_START) \
		ADMIN=$(ADMIN_ADDR) demo/walkthrough.sh

# Every suite of benches/bench.py (under 15 minutes); the tables also land in target/bench.md. The
# kafka suite starts its own 3-node Apache Kafka cluster (tests/kafka/cluster.py) from $(KAFKA_LIBS).
bench: deps build
	@command -v haproxy >/dev/null || (apt-get update -qq && apt-get install -y -qq haproxy)
	python3 benches/bench.py --kaos $(KAOS) --loadtest $(LOADTEST) --tansu $(TANSU) \
		--perf $(RDKAFKA_PERFORMANCE) --kafka-libs $(KAFKA_LIBS) --output target/bench.md

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
