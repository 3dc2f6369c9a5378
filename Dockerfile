# kaos container image: a multi-stage build, a small runtime, a non-root user.
#
#   docker build -t kaos .                         # compiles kaos in the build stage
#   docker run --network host --security-opt seccomp=deploy/seccomp/kaos-seccomp.json \
#       -e KAOS_BOOTSTRAP_SERVERS=broker:9092 -e KAOS_ADVERTISED_HOST=HOST kaos
#
# glommio runs every shard on io_uring, which the default seccomp profiles of Docker 25+, podman
# and containerd refuse: run with the profile kaos ships (the runtime's default plus the three
# io_uring calls; also in the image at /usr/share/kaos/kaos-seccomp.json). Without it kaos exits
# at once, non-zero, with a line naming seccomp. See the README's "Run kaos in a container".
#
# Build arguments:
# - RUST_IMAGE, RUNTIME_IMAGE: the build and runtime bases (any Debian bookworm image will do).
# - KAOS_BINARY=prebuilt takes a binary built outside (target/image/kaos in the context) instead
#   of compiling one: `make image-prebuilt`, and the tests, which have no registry to pull from.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG KAOS_BINARY=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace, as .dockerignore trims it: a member the build stage lacks cannot happen.
COPY . .
RUN cargo build --release --locked --bin kaos \
    && mkdir -p /out && cp target/release/kaos /out/kaos && strip /out/kaos

FROM scratch AS prebuilt
COPY target/image/kaos /out/kaos

# hadolint ignore=DL3006
FROM ${KAOS_BINARY} AS binary

# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE} AS runtime
RUN groupadd --system --gid 10001 kaos \
    && useradd --system --uid 10001 --gid kaos --home-dir /var/lib/kaos --no-create-home kaos \
    && mkdir -p /var/lib/kaos && chown kaos:kaos /var/lib/kaos
COPY --from=binary /out/kaos /usr/local/bin/kaos
COPY deploy/seccomp/kaos-seccomp.json /usr/share/kaos/kaos-seccomp.json
USER 10001:10001
WORKDIR /var/lib/kaos
ENV KAOS_BIND_HOST=0.0.0.0 \
    KAOS_ADMIN_ADDR=0.0.0.0:8888
EXPOSE 6969 8888
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8888 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["/usr/local/bin/kaos"]
