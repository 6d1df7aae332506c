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
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /app /app
USER node
# Admin API (/healthz, /readyz, /v1), xDS, ext_authz, rate limit.
EXPOSE 9080 18000 9191 8081
CMD ["node", "control-plane/dist/main.js"]
