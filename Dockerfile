# syntax=docker/dockerfile:1
# tokencache's container image: the release binary on distroless (glibc and
# CA roots, no shell, no package manager), run as a non-root user, with
# nothing to write: it runs with a read-only root filesystem.
#
#   docker build -t tokencache:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/tokencache:0.1.0 --push .
#
# Settings come from TOKENCACHE_ variables or a mounted TOML file named by
# TOKENCACHE_CONFIG; the README's "Deploying it" shows both.
# No HEALTHCHECK: the image has no HTTP client to run one, and orchestrators
# probe the admin listener's /healthz and /readyz themselves.

# The toolchain the lockfile is tested with, and the distroless image's
# Debian release (glibc), so the binary finds the libraries it was linked to.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# Each platform of a multi-arch build keeps its own build cache.
ARG TARGETPLATFORM
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=tokencache-target-${TARGETPLATFORM},target=/src/target \
    cargo build --release --locked -p tokencache \
    && install -D -m 0755 target/release/tokencache /out/tokencache

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tokencache /usr/local/bin/tokencache
# The binary's defaults are loopback addresses, unreachable from outside a
# container; the ports stay the defaults. (DL3064 takes the TOKEN in
# TOKENCACHE_ for a secret; these are addresses and a log format.)
# hadolint ignore=DL3064
ENV TOKENCACHE_LISTEN=0.0.0.0:8080 \
    TOKENCACHE_ADMIN_LISTEN=0.0.0.0:9090 \
    TOKENCACHE_LOG_FORMAT=json
EXPOSE 8080 9090
# distroless's "nonroot" user, by number, so that Kubernetes' runAsNonRoot
# can check it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tokencache"]
CMD ["serve"]
