// Bootstrap CLI for admin tokens (the API needs a token before it can be used):
//   DATABASE_URL=... node --import tsx control-plane/src/admin/token-cli.ts create <name> <read|write>
//   DATABASE_URL=... node --import tsx control-plane/src/admin/token-cli.ts revoke <name>
// `create` prints only the token on stdout, so it can be captured by a script.
import { createPrisma } from '../store/prisma.ts';
import { createAdminToken, isAdminRole, revokeAdminTokens } from './tokens.ts';

const USAGE = 'usage: token-cli.ts create <name> <read|write> | revoke <name>   (needs DATABASE_URL)';

async function main(argv: string[]): Promise<number> {
  const [command, name, role] = argv;
  const url = process.env.DATABASE_URL;
  if (!url) {
    process.stderr.write(`DATABASE_URL is not set\n${USAGE}\n`);
    return 2;
  }
  if (!name || (command === 'create' && (!role || !isAdminRole(role))) || (command !== 'create' && command !== 'revoke')) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const prisma = createPrisma(url);
  try {
    if (command === 'create' && role && isAdminRole(role)) {
      const created = await createAdminToken(prisma, name, role);
      process.stdout.write(`${created.token}\n`);
    } else {
      const count = await revokeAdminTokens(prisma, name);
      process.stderr.write(`revoked ${count} token(s) named '${name}'\n`);
    }
    return 0;
  } finally {
    await prisma.$disconnect();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
