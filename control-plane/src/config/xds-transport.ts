// Settings of the xDS port's transport: TLS (server certificate, and client
// certificates when XDS_CLIENT_CA is set) and the gRPC bounds every client
// meets. Files are read and checked here, once, so a wrong path, a file that is
// not PEM or a key that does not belong to its certificate stops the start with
// a message naming the variable.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export interface XdsTlsConfig {
  /** Server certificate chain (PEM), leaf first. */
  cert: Buffer;
  /** Private key of the leaf (PEM). */
  key: Buffer;
  /** CA bundle client certificates must chain to; set means client certificates are required. */
  clientCa: Buffer | undefined;
  /** How a node id must relate to its certificate's identity (`{identity}`, `*`; see xds/peer-identity.ts). */
  nodeIdPattern: string;
}

export interface XdsTransportConfig {
  /** Undefined: plaintext (the loopback default). */
  xdsTls: XdsTlsConfig | undefined;
  /** gRPC max receive message size on the xDS port. */
  xdsMaxReceiveBytes: number;
}

export const DEFAULT_XDS_MAX_RECEIVE_BYTES = 4 * 1024 * 1024;

const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

/** Reads a file, turning a failure into a zod issue. */
function readFor(ctx: z.RefinementCtx, file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})` });
    return undefined;
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM bundle, parsed (throws on a malformed one). */
function certificates(pem: Buffer): X509Certificate[] {
  return (pem.toString('utf8').match(PEM_CERTIFICATE) ?? []).map((block) => new X509Certificate(block));
}

const certificateFile = (what: string) =>
  z.string().transform((file, ctx) => {
    const pem = readFor(ctx, file);
    if (!pem) return z.NEVER;
    try {
      const certs = certificates(pem);
      if (certs.length === 0) throw new Error('no PEM certificate in it');
      return { pem, leaf: certs[0]! };
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `expected a PEM ${what} (${(err as Error).message})` });
      return z.NEVER;
    }
  });

const keyFile = z.string().transform((file, ctx) => {
  const pem = readFor(ctx, file);
  if (!pem) return z.NEVER;
  try {
    return { pem, key: createPrivateKey(pem) };
  } catch {
    // The parser's message could quote key material: say only what was expected.
    ctx.addIssue({ code: 'custom', message: 'expected an unencrypted PEM private key' });
    return z.NEVER;
  }
});

const byteCount = z
  .string()
  .regex(/^\d{1,10}$/, { error: 'expected a byte count' })
  .transform(Number)
  .refine((n) => n >= 64 * 1024 && n <= 256 * 1024 * 1024, { error: 'expected 65536 to 268435456 bytes' });

const pattern = z.string().superRefine((value, ctx) => {
  const count = value.split('{identity}').length - 1;
  if (count !== 1) ctx.addIssue({ code: 'custom', message: `expected exactly one {identity} (found ${count})` });
  if (value.length > 200) ctx.addIssue({ code: 'custom', message: 'expected at most 200 characters' });
});

function keyMatches(leaf: X509Certificate, key: KeyObject): boolean {
  try {
    return leaf.checkPrivateKey(key);
  } catch {
    return false;
  }
}

export const xdsTransportSchema = z
  .object({
    XDS_TLS_CERT: optional(certificateFile('certificate chain')),
    XDS_TLS_KEY: optional(keyFile),
    XDS_CLIENT_CA: optional(certificateFile('CA bundle')),
    XDS_NODE_ID_PATTERN: optional(pattern),
    XDS_MAX_RECEIVE_BYTES: optional(byteCount).default(DEFAULT_XDS_MAX_RECEIVE_BYTES),
  })
  .superRefine((e, ctx) => {
    const need = (variable: string, message: string) => ctx.addIssue({ code: 'custom', path: [variable], message });
    if (e.XDS_TLS_CERT && !e.XDS_TLS_KEY) need('XDS_TLS_KEY', 'expected a key file when XDS_TLS_CERT is set');
    if (e.XDS_TLS_KEY && !e.XDS_TLS_CERT) need('XDS_TLS_CERT', 'expected a certificate file when XDS_TLS_KEY is set');
    if (e.XDS_CLIENT_CA && !e.XDS_TLS_CERT) need('XDS_CLIENT_CA', 'client certificates need XDS_TLS_CERT and XDS_TLS_KEY');
    if (e.XDS_NODE_ID_PATTERN && !e.XDS_CLIENT_CA) need('XDS_NODE_ID_PATTERN', 'only applies with XDS_CLIENT_CA');
    if (e.XDS_TLS_CERT && e.XDS_TLS_KEY && !keyMatches(e.XDS_TLS_CERT.leaf, e.XDS_TLS_KEY.key)) {
      need('XDS_TLS_KEY', "the key does not belong to XDS_TLS_CERT's certificate");
    }
  })
  .transform(
    (e): XdsTransportConfig => ({
      xdsTls:
        e.XDS_TLS_CERT && e.XDS_TLS_KEY
          ? {
              cert: e.XDS_TLS_CERT.pem,
              key: e.XDS_TLS_KEY.pem,
              clientCa: e.XDS_CLIENT_CA?.pem,
              nodeIdPattern: e.XDS_NODE_ID_PATTERN ?? '{identity}',
            }
          : undefined,
      xdsMaxReceiveBytes: e.XDS_MAX_RECEIVE_BYTES,
    }),
  );
