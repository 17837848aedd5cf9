# Build: docker build -t pencil-bridge .
# The image runs the example configuration (demo secret, log destination).
# Mount your own file over /etc/pencil-bridge/config.toml, as the README's
# Docker section shows.

FROM rust:1-bookworm AS builder
WORKDIR /src
# Only what the build reads: sqlx::migrate! embeds migrations/, and the
# binary embeds samples/ for the `check` and `send-test` commands.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY samples ./samples
RUN cargo build --release --locked

FROM debian:bookworm-slim
# The slim image has no curl, so it is installed for the HEALTHCHECK below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 pencil-bridge \
    && useradd --system --uid 10001 --gid pencil-bridge \
        --home-dir /var/lib/pencil-bridge --no-create-home \
        --shell /usr/sbin/nologin pencil-bridge \
    && mkdir -p /var/lib/pencil-bridge \
    && chown pencil-bridge:pencil-bridge /var/lib/pencil-bridge

COPY --from=builder /src/target/release/pencil-bridge /usr/local/bin/pencil-bridge
# templates.dir = "templates" is resolved next to the config file, so the
# shipped templates serve any mounted config that keeps that default.
COPY templates /etc/pencil-bridge/templates
COPY config.toml.example /etc/pencil-bridge/config.toml

# These override server.listen and store.url of whatever config is mounted,
# so the server is reachable from outside the container and the queue lives
# in the volume. PENCIL_BRIDGE_CONFIG lets `docker exec … pencil-bridge
# deliveries list` find the config without --config.
ENV PENCIL_BRIDGE_CONFIG=/etc/pencil-bridge/config.toml \
    PENCIL_BRIDGE_SERVER__LISTEN=0.0.0.0:8080 \
    PENCIL_BRIDGE_STORE__URL=sqlite:///var/lib/pencil-bridge/pencil-bridge.db

WORKDIR /var/lib/pencil-bridge
VOLUME /var/lib/pencil-bridge
USER 10001:10001
EXPOSE 8080

# NOTE: The health check port is fixed at 8080. Change it as well when
# PENCIL_BRIDGE_SERVER__LISTEN moves the server to another port.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

ENTRYPOINT ["pencil-bridge"]
CMD ["serve", "--config", "/etc/pencil-bridge/config.toml"]
