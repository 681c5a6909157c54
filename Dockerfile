# syntax=docker/dockerfile:1
# askr-sidecar container image. Stage 1 compiles the TypeScript exactly as the README does
# (`npm ci`, `npm run build` -> dist/); stage 2 is the npm package layout (bin/, dist/, php/,
# sidecar.toml) with production dependencies only, run as uid 10001 (gid 33, www-data) under tini.
# Both stages install from the committed package-lock.json with `npm ci` (reproducible: the same
# versions on every build; it fails rather than resolve anew when the lockfile and package.json
# disagree). The lockfile lists node-unix-socket's binary package for every platform it ships
# (linux x64/arm64 glibc and musl, arm, darwin), so the image builds on amd64 and arm64 alike.
# The image has no PHP: point it at a php-fpm container (fastcgi.address, default php-fpm:9000).
# test/deploy.test.ts checks this file statically (no Docker engine runs in CI).

FROM node:24-bookworm-slim AS build
WORKDIR /src
# Dependencies first: this layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN npm run build

FROM node:24-bookworm-slim
# tini as PID 1: forwards SIGTERM/SIGINT/SIGHUP to the sidecar and reaps zombies, the same under
# `docker run`, Compose and Kubernetes (which has no --init).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
# uid 10001 with primary group www-data (gid 33, as in the Debian php:*-fpm images): the datagram
# socket is created with gid 33 and mode 0660, so php-fpm's workers (www-data) can publish to it
# and nobody else can. /run/askr is the socket directory, shared with php-fpm as a volume.
RUN useradd --uid 10001 --gid www-data --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin askr \
 && install -d -o 10001 -g 33 -m 0750 /run/askr
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# --omit=dev also skips the pinned `node` devDependency: the image's own Node 24 runs the sidecar.
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force
# bin/askr-sidecar.js runs dist/cli.js when it exists (it always does here: there is no src/).
COPY --from=build /src/dist/ dist/
COPY bin/ bin/
COPY php/ php/
COPY sidecar.toml ./
# The default config (overridable by mounting a file there); ASKR_* env vars win over it.
COPY deploy/docker/sidecar.toml /etc/askr/sidecar.toml

# The listen addresses and the socket path are part of the image's contract (EXPOSE, HEALTHCHECK,
# VOLUME), so they are set here rather than in the file.
ENV ASKR_SERVER_LISTEN=0.0.0.0:8080 \
    ASKR_METRICS_LISTEN=0.0.0.0:9100 \
    ASKR_BROADCAST_SOCKET=/run/askr/askr.sock
VOLUME ["/run/askr"]
# 8080: HTTP (the app, static files, SSE); 9100: /metrics, /healthz, /readyz.
EXPOSE 8080 9100
USER 10001:33
# No curl in the slim image: Node's fetch. The port follows ASKR_METRICS_LISTEN.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const m = /:(\\d+)$/.exec(process.env.ASKR_METRICS_LISTEN ?? ''); fetch('http://127.0.0.1:' + (m ? m[1] : '9100') + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1));"]
# SIGTERM drains for up to server.shutdown_timeout (30s): run with --stop-timeout 35 (Compose:
# stop_grace_period, Kubernetes: terminationGracePeriodSeconds) or Docker kills it after 10s.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/askr-sidecar.js"]
CMD ["serve", "--config", "/etc/askr/sidecar.toml"]
