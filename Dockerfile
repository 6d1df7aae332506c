# The Sluice control plane image, built from this repository with `npm ci`.
#   docker build -t sluice-control-plane:0.1.0 .
# (Envoy is not in it: deployments run the official envoyproxy/envoy image at
# the version in envoy/VERSION; see deploy/.)
#
# Stage 1 installs exactly package-lock.json and builds what the install makes
# (proto types, Prisma Client). Install scripts are not run wholesale; as in
# scripts/setup.sh, only the ones we need and have read are run by path.
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
 && node node_modules/esbuild/install.js
COPY . .
# Proto type declarations and Prisma Client (offline: prisma/no-schema-engine.sh),
# then the control plane compiled to JavaScript (control-plane/dist: what runs).
RUN bash scripts/gen-proto-types.sh \
 && npm run --silent db:generate \
 && bash scripts/build.sh \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error

# Stage 2: the runtime. Node 20, the app and its production dependencies only,
# run as the unprivileged `node` user. Postgres is external (DATABASE_URL).
FROM node:20-bookworm-slim
# Memory (issue 12, bench/RESULTS.md); scripts/start.sh and the propagation bench
# set the same (test/unit/runtime-env.test.ts). glibc malloc: two arenas instead of
# one per thread (the request-path worker's, libuv's and V8's threads each keep
# fragments of their own after a peak), and a fixed 128 KiB mmap threshold (glibc
# otherwise raises it after large frees, so later multi-MiB buffers come from the
# heap and stay resident). --expose-gc: main.ts collects once quiet after start-up
# and after a publish that grew the heap (its quietCollector), and compacts its
# heap and the request-path worker's once start-up is done (quiet-collector.ts).
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    NODE_OPTIONS=--expose-gc
WORKDIR /app
COPY --from=build --chown=node:node /app /app
USER node
# Admin API (/healthz, /readyz, /v1), xDS, ext_authz, rate limit.
EXPOSE 9080 18000 9191 8081
# The entry module holds V8's young generation before main.ts loads (control-plane/src/start.ts).
CMD ["node", "control-plane/dist/start.js"]
