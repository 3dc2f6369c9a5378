# kaos container image: a multi-stage build, a small runtime, a non-root user.
# glommio needs io_uring and locked memory: run with `--ulimit memlock=-1` and a seccomp profile
# that allows io_uring (docker-compose.yaml sets both; see the README).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY vendor ./vendor
COPY src ./src
COPY benches ./benches
COPY loadtest ./loadtest
RUN cargo build --release --locked -p kaos --bin kaos \
    && strip target/release/kaos

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 kaos && useradd --system --uid 10001 --gid kaos --no-create-home kaos \
    && mkdir -p /var/lib/kaos && chown kaos:kaos /var/lib/kaos
COPY --from=build /src/target/release/kaos /usr/local/bin/kaos
USER 10001:10001
ENV KAOS_BIND_HOST=0.0.0.0 \
    KAOS_ADMIN_ADDR=0.0.0.0:8888
EXPOSE 6969 8888
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8888 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["/usr/local/bin/kaos"]
