# syntax=docker/dockerfile:1
# One image for every Letterbox process: letterbox-producer (with letterbox-extract beside it),
# letterbox-consumer, letterbox-admin and letterbox-stub-llm. Pick one with the command:
#
#   docker build -t letterbox:dev .
#   docker run --rm letterbox:dev letterbox-admin --help
#
# docker-compose.yml and deploy/k8s/ run it.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches survive between builds; the binaries are copied out of the
# cached target directory in the same step, since a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/letterbox-producer target/release/letterbox-extract \
       target/release/letterbox-consumer target/release/letterbox-admin \
       target/release/letterbox-stub-llm /out/

FROM debian:bookworm-slim
# ca-certificates: TLS to the LLM provider, and to the broker and Vault when they use it.
# curl: health checks. jq: the compose stack's bootstrap reads `letterbox-admin setup --json`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl jq \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 letterbox \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin letterbox
# letterbox-extract sits beside letterbox-producer, where the producer looks for it.
COPY --from=builder /out/ /usr/local/bin/
# Inside a container the processes listen on every interface; publish only the ports you mean to.
ENV LETTERBOX_HTTP_ADDR=0.0.0.0:8080 \
    LETTERBOX_METRICS_ADDR=0.0.0.0:9090 \
    STUB_LLM_ADDR=0.0.0.0:8089
EXPOSE 8080 9090 8089
# Numeric, so Kubernetes can check runAsNonRoot against it.
USER 10001:10001
CMD ["letterbox-producer"]
