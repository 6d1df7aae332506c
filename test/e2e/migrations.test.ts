// Migration runner, schema and Prisma adapter against a real Postgres
// (embedded, or DATABASE_URL's server), plus embedded-Postgres cleanup on signals.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { repoRoot } from '../../control-plane/src/config/env.ts';
import { defaultMigrationsDir, migrate, MigrationError } from '../../control-plane/src/store/migrate.ts';
import { createPrisma } from '../../control-plane/src/store/prisma.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

const databases: TestDatabase[] = [];
async function freshDatabase(): Promise<string> {
  const db = await createTestDatabase();
  databases.push(db);
  return db.url;
}
after(async () => {
  for (const db of databases) await db.drop();
  await stopTestPostgres();
});

const realMigrations = (await readdir(defaultMigrationsDir)).filter((n) => n.endsWith('.sql')).sort();

async function query<R extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Tables, columns, constraints, indexes, triggers and functions of `public`, as sorted text. */
async function schemaOf(url: string): Promise<string[]> {
  const rows = await query<{ line: string }>(url, `
    SELECT format('column %s.%s %s null=%s default=%s', table_name, column_name, data_type, is_nullable, column_default) AS line
      FROM information_schema.columns WHERE table_schema = 'public'
    UNION ALL
    SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL
    SELECT format('trigger %s', pg_get_triggerdef(oid)) FROM pg_trigger
      WHERE NOT tgisinternal AND tgrelid::regclass::text NOT LIKE 'pg_%'
    UNION ALL
    SELECT format('function %s', proname) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
    ORDER BY 1`);
  return rows.map((r) => r.line);
}

async function appliedRows(url: string): Promise<string[]> {
  return (await query<{ name: string }>(url, 'SELECT name FROM sluice_migrations ORDER BY name')).map((r) => r.name);
}

/** A temp copy of migrations/ plus extra files. */
async function migrationsDirWith(extra: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sluice-migrations-'));
  await cp(defaultMigrationsDir, dir, { recursive: true });
  for (const [name, sql] of Object.entries(extra)) await writeFile(path.join(dir, name), sql);
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('migration runner', () => {
  test('applies every migration once; a second run changes nothing', async () => {
    const url = await freshDatabase();
    const first = await migrate(url);
    assert.deepEqual(first.applied, realMigrations);
    const schema = await schemaOf(url);
    assert.ok(schema.some((l) => l.startsWith('column upstreams.spec jsonb')), 'upstreams table exists');

    const second = await migrate(url);
    assert.deepEqual(second.applied, []);
    assert.deepEqual(second.alreadyApplied, realMigrations);
    assert.deepEqual(await schemaOf(url), schema);
    assert.deepEqual(await appliedRows(url), realMigrations);
  });

  test('concurrent runners apply each migration exactly once', async () => {
    const url = await freshDatabase();
    const results = await Promise.all([migrate(url), migrate(url), migrate(url)]);
    assert.deepEqual(results.flatMap((r) => r.applied).sort(), realMigrations);
    assert.deepEqual(await appliedRows(url), realMigrations);
  });

  test('a migration failing part-way rolls back entirely and is named', async () => {
    const url = await freshDatabase();
    await migrate(url);
    const before = await schemaOf(url);
    const dir = await migrationsDirWith({
      '9999_broken.sql': 'CREATE TABLE half_applied (id int);\nSELECT no_such_column FROM upstreams;\n',
    });

    await assert.rejects(migrate(url, { dir }), (err: unknown) => {
      assert.ok(err instanceof MigrationError);
      assert.equal(err.migration, '9999_broken.sql');
      assert.match(err.message, /9999_broken\.sql.*no_such_column.*line 2/);
      return true;
    });
    assert.deepEqual(await schemaOf(url), before);
    const [row] = await query<{ t: string | null }>(url, "SELECT to_regclass('half_applied')::text AS t");
    assert.equal(row?.t, null);
    assert.deepEqual(await appliedRows(url), realMigrations);

    // The CLI says the same and exits non-zero.
    const cli = spawnSync(
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'control-plane/src/store/migrate-cli.ts'), '--dir', dir],
      { cwd: repoRoot, env: { ...process.env, DATABASE_URL: url }, encoding: 'utf8' },
    );
    assert.equal(cli.status, 1, cli.stderr);
    assert.match(cli.stderr, /9999_broken\.sql/);
  });

  test('on a fresh database, migrations before the broken one stay applied', async () => {
    const url = await freshDatabase();
    const dir = await migrationsDirWith({ '9999_broken.sql': 'CREATE TABLE half_applied (id int);\nSELECT 1/0;\n' });
    await assert.rejects(migrate(url, { dir }), /9999_broken\.sql/);
    assert.deepEqual(await appliedRows(url), realMigrations);
  });

  test('refuses to run when an applied migration was edited', async () => {
    const url = await freshDatabase();
    await migrate(url);
    const dir = await migrationsDirWith({});
    const first = realMigrations[0] ?? assert.fail('no migrations');
    await writeFile(path.join(dir, first), `${await readFile(path.join(dir, first), 'utf8')}\n-- edited\n`);
    await assert.rejects(migrate(url, { dir }), (err: unknown) => {
      assert.ok(err instanceof MigrationError);
      assert.equal(err.migration, first);
      assert.match(err.message, /changed after it was applied/);
      return true;
    });
  });
});

describe('schema', () => {
  test('prisma/schema.prisma matches the migrated tables (columns and nullability)', async () => {
    const url = await freshDatabase();
    await migrate(url);
    const prismaSchema = await readFile(path.join(repoRoot, 'prisma/schema.prisma'), 'utf8');
    const fromPrisma = prismaColumns(prismaSchema);
    const tables = [...new Set(fromPrisma.map((c) => c.split(' ')[0]))];
    const fromDb = (
      await query<{ line: string }>(
        url,
        `SELECT table_name || ' ' || column_name || ' ' || (CASE is_nullable WHEN 'YES' THEN 'null' ELSE 'not-null' END) AS line
           FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ANY($1)`,
        [tables],
      )
    ).map((r) => r.line);
    assert.deepEqual(fromPrisma.sort(), fromDb.sort());
    // Every table the migrations create has a Prisma model (only the runner's own bookkeeping has none).
    const migrated = (
      await query<{ table_name: string }>(url, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
    ).map((r) => r.table_name).filter((name) => name !== 'sluice_migrations');
    assert.deepEqual([...tables].sort(), migrated.sort());
  });

  test('Prisma Client through @prisma/adapter-pg writes and reads upstreams', async () => {
    const url = await freshDatabase();
    await migrate(url);
    const prisma = createPrisma(url);
    try {
      const spec = { endpoints: [{ host: '127.0.0.1', port: 8080, weight: 1 }], lb: 'round_robin' };
      const created = await prisma.upstream.create({ data: { name: 'orders', spec } });
      assert.match(created.id, /^[0-9a-f-]{36}$/);
      assert.equal(created.version, 1);
      const read = await prisma.upstream.findUnique({ where: { name: 'orders' } });
      assert.deepEqual(read?.spec, spec);
      assert.ok(read?.createdAt instanceof Date);

      // Credentials cascade with their consumer.
      const consumer = await prisma.consumer.create({ data: { name: 'acme', spec: {} } });
      await prisma.credential.create({ data: { name: 'acme-key', consumerId: consumer.id, keyPrefix: 'sk_ab', keyHash: 'h1', spec: {} } });
      await prisma.consumer.delete({ where: { id: consumer.id } });
      assert.equal(await prisma.credential.count(), 0);
    } finally {
      await prisma.$disconnect();
    }
  });

  test('inserting a revision notifies sluice_revision on commit', async () => {
    const url = await freshDatabase();
    await migrate(url);
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    try {
      await listener.query('LISTEN sluice_revision');
      const heard = new Promise<string | undefined>((resolve) => listener.once('notification', (n) => resolve(n.payload)));
      const [row] = await query<{ id: string }>(url, "INSERT INTO revisions (author, snapshot) VALUES ('test', '{}') RETURNING id");
      assert.equal(await heard, row?.id);
    } finally {
      await listener.end();
    }
  });
});

/** "table column null|not-null" for every scalar field of every model in a Prisma schema. */
function prismaColumns(schema: string): string[] {
  const scalars = new Set(['String', 'Int', 'BigInt', 'Boolean', 'DateTime', 'Json', 'Float', 'Decimal', 'Bytes']);
  const columns: string[] = [];
  for (const [, body = ''] of schema.matchAll(/^model \w+ \{\n([\s\S]*?)^\}/gm)) {
    const table = /@@map\("(\w+)"\)/.exec(body)?.[1] ?? assert.fail('every model maps to a table');
    for (const line of body.split('\n')) {
      const field = /^\s+(\w+)\s+(\w+)(\?|\[\])?/.exec(line);
      if (!field || !scalars.has(field[2] ?? '') || field[3] === '[]') continue;
      const column = /@map\("(\w+)"\)/.exec(line)?.[1] ?? field[1];
      columns.push(`${table} ${column} ${field[3] === '?' ? 'null' : 'not-null'}`);
    }
  }
  return columns;
}

describe('embedded Postgres lifecycle', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`a test process killed with ${signal} leaves no postgres behind`, { skip: !existsSync('/proc/self/cmdline') }, async () => {
      const helper = path.join(repoRoot, 'test/helpers/postgres.ts');
      const script = `
        import { testPostgres } from ${JSON.stringify(helper)};
        const pg = await testPostgres();
        console.log('READY ' + pg.dataDir);
        setInterval(() => {}, 60_000);`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const dataDir = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /READY (\S+)/.exec(out);
          if (m?.[1]) resolve(m[1]);
        });
        child.once('exit', (code) => reject(new Error(`child exited ${code} before ready: ${stderr}`)));
      });
      const postmaster = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
      assert.deepEqual(await processesUsing(dataDir), [postmaster]);

      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill(signal);
      assert.equal(await exited, signal === 'SIGTERM' ? 143 : 130, stderr);
      const deadline = Date.now() + 5_000;
      while ((await processesUsing(dataDir)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(await processesUsing(dataDir), [], 'postgres still running');
      assert.equal(existsSync(path.dirname(dataDir)), false, 'temp cluster removed');
    });
  }
});

/** Pids whose command line mentions `dataDir` (the postmaster runs as `postgres -D <dataDir> ...`). */
async function processesUsing(dataDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(dataDir)) pids.push(Number(entry));
  }
  return pids;
}
