// Prisma CLI configuration (Prisma 7 reads it instead of schema `url`/.env).
// Only `prisma generate` is part of the build; it needs no database and no
// download. The datasource is set only when DATABASE_URL is, for ad-hoc tools
// such as `prisma studio` or `prisma db pull`. Never run `prisma migrate`:
// migrations/*.sql are applied by control-plane/src/store/migrate.ts.
import { defineConfig } from 'prisma/config';

const url = process.env.DATABASE_URL;

export default defineConfig({
  schema: 'prisma/schema.prisma',
  ...(url ? { datasource: { url } } : {}),
});
