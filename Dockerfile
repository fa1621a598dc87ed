# syntax=docker/dockerfile:1
# sluice container image: build on Debian 12, run on Debian 12 slim with only the
# shared libraries the binary links (found by ldd, not listed by hand).
#
#   docker build -t sluice .          (or: packaging/container/build.sh, with buildah)
#   docker run -d -v sluice-spool:/var/lib/sluice -p 9187:9187 \
#     -e MQTT_URL=tcp://broker:1883 -e KAFKA_BOOTSTRAP=kafka:9092 sluice

ARG DEBIAN=docker.io/library/debian:bookworm-slim

FROM ${DEBIAN} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      build-essential pkg-config meson ninja-build \
      libpaho-mqtt-dev librdkafka-dev libsqlite3-dev libjansson-dev libyaml-dev zlib1g-dev \
      libmicrohttpd-dev libprotobuf-c-dev protobuf-c-compiler libsystemd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Build only the daemon (no tests, no tools), then list the Debian packages that own
# every shared library it loads: the runtime stage installs exactly those.
RUN meson setup /build -Dtests=false --buildtype=release --prefix=/usr \
 && ninja -C /build sluice \
 && install -D -m 0755 -s /build/sluice /out/usr/bin/sluice \
 && install -D -m 0644 packaging/container/sluice.yaml /out/etc/sluice/sluice.yaml \
 && ldd /build/sluice | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
    | while read -r lib; do \
        dpkg -S "*/$(basename "$lib")" | awk -F': ' -v b="/$(basename "$lib")" \
          'substr($2, length($2) - length(b) + 1) == b { print $1 }'; \
      done | sed 's/:.*//' | tr ', ' '\n\n' | grep -v '^$' | sort -u > /out/runtime-packages \
 && cat /out/runtime-packages

FROM ${DEBIAN}
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update -qq \
 && xargs -a /tmp/runtime-packages apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /tmp/runtime-packages \
 && groupadd --gid 10001 sluice \
 && useradd --uid 10001 --gid sluice --home-dir /var/lib/sluice --no-create-home \
      --no-log-init --shell /usr/sbin/nologin sluice \
 && install -d -m 0700 -o sluice -g sluice /var/lib/sluice
COPY --from=build /out/usr/bin/sluice /usr/bin/sluice
COPY --from=build /out/etc/sluice/sluice.yaml /etc/sluice/sluice.yaml
# Fails the build if a library is missing (the ldd list above went wrong).
RUN ! ldd /usr/bin/sluice | grep 'not found' && sluice --version

USER 10001:10001
VOLUME ["/var/lib/sluice"]
EXPOSE 9187
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["sluice", "health", "-c", "/etc/sluice/sluice.yaml"]
ENTRYPOINT ["sluice"]
CMD ["run", "-c", "/etc/sluice/sluice.yaml"]
