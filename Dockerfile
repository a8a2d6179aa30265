# syntax=docker/dockerfile:1
#
# The /data telemetry stack in one image: `broker`, `device-sim` and `consumer` in
# /usr/local/bin. The default command runs the broker; compose runs the other two from the
# same image with a different command.

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds (BuildKit, the default builder of
# `docker compose`). target/ is a cache mount, so copy the binaries out in the same step.
# The workspace's release profile keeps line tables for profiling; the image does not need
# them (30-40 MB per binary with them, a few MB without).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p broker -p device-sim -p consumer \
    && mkdir -p /out \
    && cp target/release/broker target/release/device-sim target/release/consumer /out/

# ---- run --------------------------------------------------------------------
FROM debian:bookworm-slim
# Same user and ids as the Mosquitto image, so existing volumes keep working.
RUN groupadd --system --gid 1883 mosquitto \
    && useradd --system --uid 1883 --gid 1883 --no-create-home --home-dir /mosquitto \
       --shell /usr/sbin/nologin mosquitto \
    && mkdir -p /mosquitto/conf /mosquitto/data /mosquitto/log
COPY --from=build /out/broker /out/device-sim /out/consumer /usr/local/bin/
COPY --chown=1883:1883 conf/mosquitto.conf /mosquitto/conf/mosquitto.conf
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chown -R 1883:1883 /mosquitto
WORKDIR /mosquitto
# No USER line: the entry point starts as root only to give uid 1883 the
# mounted data/ and log/ directories, then runs every command as 1883
# (setpriv, from util-linux, which Debian always has).
EXPOSE 1883
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["broker", "-c", "/mosquitto/conf/mosquitto.conf"]
