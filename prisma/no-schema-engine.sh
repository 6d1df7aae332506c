#!/bin/sh
# Stand-in for Prisma's native schema engine, which the Prisma CLI insists on
# downloading before `prisma generate` (from a host that is unreachable here)
# even though the Rust-free `prisma-client` generator never runs it. Pointing
# PRISMA_SCHEMA_ENGINE_BINARY at this file skips the download (see the
# db:generate script in package.json). Anything that really needs the engine
# (`prisma migrate`, `db push`, `db pull`) fails here with this message instead.
echo "schema engine not installed: Sluice applies migrations/*.sql with control-plane/src/store/migrate-cli.ts, not prisma migrate" >&2
exit 1
