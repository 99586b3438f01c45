# Build: docker build -t button-delivery .
# Run:   docker run -p 8084:8084 -v button-data:/data button-delivery
#
# The two base images are build arguments, so a build without a registry can pass
# local stand-ins (.ci/docker.sh does):
#   docker build --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=... .
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the build directory between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin button-delivery \
 && cp target/release/button-delivery /button-delivery \
 && mkdir -m 700 /data

# Distroless: glibc and CA certificates, no shell, no package manager; runs as the
# image's nonroot user (65532).
FROM ${RUNTIME_IMAGE}
COPY --from=build /button-delivery /usr/local/bin/button-delivery
COPY --from=build --chown=65532:65532 /data /data
ENV BUTTON_SERVER__DATA_DIR=/data \
    BUTTON_SERVER__LISTEN=0.0.0.0:8084 \
    BUTTON_LOG__FORMAT=json
VOLUME ["/data"]
EXPOSE 8084
USER 65532:65532
# The binary checks itself (no curl in the image).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/button-delivery", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/button-delivery"]
