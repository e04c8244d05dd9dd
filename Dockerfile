# syntax=docker/dockerfile:1.7
# One image for every choreo process: the container's command picks the subcommand
# (order, inventory, payment, shipping, notification, orderview, ingress, topics, replay, dlq, healthcheck;
# `choreo help` lists them).
#
#   docker build -t choreo:dev .
#   docker run --rm -e KAFKA_BROKERS=... -e DATABASE_URL=... choreo:dev order
#
# Pin the bases by digest in CI (e.g. golang:1.26.8-bookworm@sha256:...) so rebuilds are reproducible;
# the tags below are the reviewed versions. GO_VERSION must match the `go` line of go.mod.

ARG GO_VERSION=1.26.8

# ---- build: a static binary, cross-compiled on the build host's architecture (no QEMU for arm64).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src

# Modules first, so editing source does not re-download them; the cache mounts survive between builds.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG TARGETOS
ARG TARGETARCH
# CGO_ENABLED=0: the runtime image has no libc. -trimpath and -s -w: reproducible, smaller binary.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/choreo ./cmd/choreo

# ---- runtime: distroless static (CA certificates, tzdata, /etc/passwd with nonroot 65532; no shell).
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="choreo" \
      org.opencontainers.image.description="Choreographed-saga reference system on Kafka + Postgres" \
      org.opencontainers.image.source="https://github.com/choreo-dev/choreo"
COPY --from=build /out/choreo /choreo
# Inside a container the HTTP server must listen on all interfaces for probes and the ingress to reach it;
# the binary's own default (127.0.0.1) is right on a laptop, not here.
ENV HTTP_ADDR=0.0.0.0:8080
USER nonroot:nonroot
EXPOSE 8080
# No shell in the image: health checks use the binary itself (`choreo healthcheck` GETs /healthz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["/choreo", "healthcheck"]
ENTRYPOINT ["/choreo"]
