// Passwords and API tokens. Passwords: scrypt from node:crypto (memory-hard: N=2^15, r=8, p=1, so
// 32 MiB and tens of ms per try on a gateway), a random 16-byte salt each, compared in constant
// time. Tokens (API tokens and dashboard sessions alike): `cct_<id>_<secret>`, 32 random bytes of
// secret; only SHA-256 of the secret is stored — it has 256 bits of entropy, so a slow hash adds
// nothing, and checking a token stays a hash and a map lookup on every request.
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

export const SCRYPT_PARAMS = { N: 2 ** 15, r: 8, p: 1, keyLen: 32 } as const;
/** scrypt needs 128·N·r bytes; node's default cap (32 MiB) is exactly that, so allow a margin. */
const MAXMEM = 64 * 1024 * 1024;

function scryptAsync(password: string, salt: Buffer, p: { N: number; r: number; p: number }, keyLen: number) {
  return new Promise<Buffer>((resolve, reject) =>
    scrypt(password, salt, keyLen, { N: p.N, r: p.r, p: p.p, maxmem: MAXMEM }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** `scrypt$N$r$p$salt$hash` (base64url): the parameters travel with the hash, so they can grow later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { N, r, p, keyLen } = SCRYPT_PARAMS;
  const key = await scryptAsync(password, salt, { N, r, p }, keyLen);
  return ['scrypt', N, r, p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64url');
  const want = Buffer.from(parts[5]!, 'base64url');
  if (!(N > 1 && r > 0 && p > 0) || want.length === 0) return false;
  const got = await scryptAsync(password, salt, { N, r, p }, want.length);
  return timingSafeEqual(got, want);
}

/**
 * Hashed once, when the first AuthStore starts: a sign-in for a name that does not exist still
 * runs one scrypt against it, so the answer's timing does not tell whether the user exists.
 */
let decoy: Promise<string> | undefined;
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(16).toString('hex'));
  return decoy;
}

export interface NewToken {
  id: string;
  /** The whole token, shown once; never stored. */
  token: string;
  /** SHA-256 of the secret, hex: what is stored. */
  hash: string;
}

export function newToken(): NewToken {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, token: `cct_${id}_${secret}`, hash: secretHash(secret) };
}

/** A token's grammar, once: `cct_`, its id (16 hex), `_`, its secret (32 bytes, base64url). */
const TOKEN_PARTS = 'cct_([0-9a-f]{16})_([A-Za-z0-9_-]{43})';
const TOKEN = new RegExp(`^${TOKEN_PARTS}$`);

/**
 * A token anywhere in a text (id and secret captured): what an echo of client input or an audit
 * entry must not show. Global: use it with `replace`, not `exec`.
 */
export const TOKEN_SHAPE = new RegExp(TOKEN_PARTS, 'g');

/** The id and secret of a token, or null when it is not one of ours. */
export function parseToken(token: string): { id: string; secret: string } | null {
  const m = TOKEN.exec(token);
  return m ? { id: m[1]!, secret: m[2]! } : null;
}

export function secretHash(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}
