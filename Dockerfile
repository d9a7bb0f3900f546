# syntax=docker/dockerfile:1
# logproxy in a container: built with the Rust toolchain, run on Debian slim as a non-root user.
#
#   docker build -t logproxy .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9464:9464 -e LOGPROXY__CLICKHOUSE__URL=http://my-clickhouse:8123 logproxy
#
# The API listens on 8080; /metrics and /readyz (every tenant's name, the cluster's layout)
# only on the admin listener 9464 (LOGPROXY__SERVER__ADMIN_BIND): publish it to Prometheus
# and the orchestrator, not to API clients. /healthz answers on both.
#
# Every setting can be overridden with LOGPROXY__SECTION__KEY (e.g. LOGPROXY__CLICKHOUSE__PASSWORD).
# Lists (auth.tenants, rate_limit.overrides, logs.levels) come only from the config file: mount
# your own over /app/config/default.toml, or pass `serve --config <file>` as the command.

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and build artefacts between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/logproxy /out/logproxy

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin logproxy
WORKDIR /app
COPY --from=build /out/logproxy /usr/local/bin/logproxy
COPY config/ /app/config/
# `clickhouse` is the host name of a ClickHouse service next to this container (compose, k8s).
ENV LOGPROXY__SERVER__BIND=0.0.0.0:8080 \
    LOGPROXY__SERVER__ADMIN_BIND=0.0.0.0:9464 \
    LOGPROXY__CLICKHOUSE__URL=http://clickhouse:8123 \
    RUST_LOG=info
USER logproxy
EXPOSE 8080 9464
# No curl in the slim image: bash's /dev/tcp sends the request, on the port of the bind address.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${LOGPROXY__SERVER__BIND##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["logproxy"]
CMD ["serve", "--config", "/app/config/default.toml"]
