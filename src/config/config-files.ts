// Reading the files a config is, or names: one bounded read, one text rule and one secret rule for
// every reader, so that `config validate`, `coolctl run`, a reload and whatever reads a file again
// at run time refuse the same files with the same words. A refusal names the file and what to do,
// never a byte of what it holds (a parser's message may quote a line: only positions go out).

import { isUtf8 } from 'node:buffer';
import { X509Certificate } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { ConfigError } from '../errors.ts';

/**
 * The largest site file read: twice a generated 1 000-unit, 10 000-node hall (4.4 MB), the largest
 * a node is sized for (docs/scale.md). Parsing takes ~7× the file at its peak; a bigger file would
 * push a gateway's heap up for good on every reload.
 */
export const SITE_FILE_MAX_BYTES = 8 * 1024 * 1024;
/** The largest controller config read: a nine-node cluster's is under 4 KB. */
export const CONTROLLER_FILE_MAX_BYTES = 1024 * 1024;
/** The largest secret file (a password, a key, the peer keys of 100 nodes) read. */
export const SECRET_FILE_MAX_BYTES = 64 * 1024;
/** The largest certificate file read (a CA bundle included). */
export const CERT_FILE_MAX_BYTES = 1024 * 1024;
/**
 * The largest device profile read (by the controller, `profile check` and `profile read`): eight
 * times the largest shipped one (4.2 KB). Checking a profile costs more than its size (before the
 * checks were capped, 64 KB of empty points were 22 000 problems and 4.5 s).
 */
export const PROFILE_FILE_MAX_BYTES = 32 * 1024;

/** Why a file was refused: what is wrong (naming the file) and what would do. */
export interface FileRefusal {
  message: string;
  allowed: string;
  /** The line the problem is on, where the file itself is the config. */
  line?: number | undefined;
  /** The system's error code when the file could not be read (ENOENT, EACCES, …). */
  code?: string | undefined;
}

export type FileRead<T> = { ok: true; value: T } | ({ ok: false } & FileRefusal);

const refuse = (message: string, allowed: string, line?: number): { ok: false } & FileRefusal => ({
  ok: false,
  message,
  allowed,
  ...(line !== undefined ? { line } : {}),
});

const size = (n: number): string =>
  n >= 1024 * 1024
    ? `${(n / 1024 / 1024).toFixed(1)} MB`
    : n >= 1024
      ? `${Math.round(n / 1024)} KB`
      : `${n} bytes`;

const errorCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? 'error';

/** A stat that says what a reader may not take: not a regular file, or bigger than `maxBytes`. */
function shapeRefusal(full: string, st: Stats, maxBytes: number, what: string): FileRefusal | undefined {
  if (!st.isFile()) return { message: `${full} is not a regular file`, allowed: `a ${what}` };
  if (st.size > maxBytes) return tooBig(full, st.size, maxBytes, what);
  return undefined;
}

function tooBig(full: string, bytes: number, maxBytes: number, what: string): FileRefusal {
  return {
    message: `${full} is ${size(bytes)}, more than the ${size(maxBytes)} a ${what} may be`,
    allowed: `a ${what} of at most ${size(maxBytes)} (docs/site-config.md, "File limits")`,
  };
}

const unreadable = (full: string, err: unknown, what: string): { ok: false } & FileRefusal => ({
  ...refuse(`cannot read ${full} (${errorCode(err)})`, `a readable ${what}`),
  code: errorCode(err),
});

interface Bounded {
  bytes: Buffer;
  st: Stats;
}

/**
 * The file's bytes, sized by stat before a byte is read (a FIFO, a device or a 100 MB file is
 * refused without opening it), then judged again by the file actually opened: a save by rename
 * may put another file under the name between the two, and what is read must be that file, whole
 * (the old file's length of the new one is a cut YAML file that may parse), of the kind and mode
 * its own stat says. Opened non-blocking, so a FIFO swapped in meanwhile is refused, never waited
 * on; read to its end, never past `maxBytes`.
 */
async function readBounded(full: string, maxBytes: number, what: string): Promise<FileRead<Bounded>> {
  let st: Stats;
  try {
    st = await stat(full);
  } catch (err) {
    return unreadable(full, err, what);
  }
  const shape = shapeRefusal(full, st, maxBytes, what);
  if (shape) return { ok: false, ...shape };
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(full, constants.O_RDONLY | constants.O_NONBLOCK);
    const opened = await fh.stat();
    const swapped = shapeRefusal(full, opened, maxBytes, what);
    if (swapped) return { ok: false, ...swapped };
    let buf = Buffer.alloc(Math.min(opened.size, maxBytes) + 1);
    let got = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got > maxBytes) return { ok: false, ...tooBig(full, got, maxBytes, what) };
      // Grown since its stat (written to while read): room for the rest, up to one byte past the limit.
      if (got === buf.length) {
        const more = Buffer.alloc(Math.min(buf.length * 2, maxBytes + 1));
        buf.copy(more, 0, 0, got);
        buf = more;
      }
    }
    return { ok: true, value: { bytes: buf.subarray(0, got), st: opened } };
  } catch (err) {
    return unreadable(full, err, what);
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** A file's bytes, at most `maxBytes`, sized by stat before reading; `what` names the kind of file in a refusal. */
export async function readBoundedFile(
  full: string,
  maxBytes: number,
  what: string,
): Promise<FileRead<Buffer>> {
  const r = await readBounded(full, maxBytes, what);
  return r.ok ? { ok: true, value: r.value.bytes } : r;
}

/**
 * A CA file's bytes (PEM, one certificate or a bundle; not a secret, so any mode), refused when no
 * certificate parses in it: a TLS link given a wrong file would fail every handshake, later and
 * with a less useful error.
 */
export async function readCaFile(full: string): Promise<FileRead<Buffer>> {
  const r = await readBoundedFile(full, CERT_FILE_MAX_BYTES, 'PEM file');
  if (!r.ok) return r;
  try {
    new X509Certificate(r.value);
  } catch {
    return refuse(`${full} holds no PEM certificate`, 'the PEM certificate(s) of the CA');
  }
  return r;
}

/**
 * The bytes as UTF-8 text, or where they are not: a config is UTF-8 (YAML's own default). A file
 * saved as UTF-16 (Windows editors) or Latin-1 is refused with what it is and where, rather than
 * read with U+FFFD in place of its bytes, or as "null byte is not allowed".
 */
export function utf8Text(bytes: Uint8Array, full?: string): FileRead<string> {
  const it = full ?? 'the file';
  const utf16 = utf16Kind(bytes);
  if (utf16)
    return refuse(
      `${it} is UTF-16 (${utf16}) text`,
      'UTF-8: save it as UTF-8 in the editor, or iconv -f UTF-16 -t UTF-8',
      1,
    );
  if (isUtf8(bytes)) return { ok: true, value: Buffer.from(bytes).toString('utf8') };
  const at = firstInvalidUtf8(bytes);
  let line = 1;
  for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) line++;
  return refuse(
    `${full ? `${full}: ` : ''}byte ${at} (line ${line}) is 0x${bytes[at]!.toString(16).padStart(2, '0')}, which is not UTF-8`,
    'UTF-8 text: save it as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)',
    line,
  );
}

/**
 * Reads a config file as UTF-8 text; a file that cannot be read, is no regular file, is bigger
 * than `maxBytes` (sized before it is read) or is not UTF-8 is a ConfigError like any other problem.
 */
export async function readConfigFile(
  file: string,
  maxBytes = SITE_FILE_MAX_BYTES,
  what = 'config file',
): Promise<string> {
  const bytes = await readBoundedFile(file, maxBytes, what);
  // The problem names the file already: an unreadable one is said by its error code.
  if (!bytes.ok && bytes.code)
    throw new ConfigError(file, [
      { file, path: '', message: `cannot read file (${bytes.code})`, allowed: `a readable ${what}` },
    ]);
  const text = bytes.ok ? utf8Text(bytes.value) : bytes;
  if (!text.ok)
    throw new ConfigError(file, [
      { file, path: '', line: text.line, message: text.message, allowed: text.allowed },
    ]);
  return text.value;
}

/** 'little-endian' or 'big-endian' when the bytes look like UTF-16: a byte-order mark, or ASCII with a NUL beside each byte. */
function utf16Kind(b: Uint8Array): string | undefined {
  if (b.length < 2) return undefined;
  if (b[0] === 0xff && b[1] === 0xfe) return 'little-endian';
  if (b[0] === 0xfe && b[1] === 0xff) return 'big-endian';
  if (b[0] !== 0 && b[1] === 0) return 'little-endian';
  if (b[0] === 0 && b[1] !== 0) return 'big-endian';
  return undefined;
}

/** Offset of the first byte that does not start or continue a well-formed UTF-8 sequence, or −1. */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    const n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
    if (n === 0 || i + n >= b.length) return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const d = b[i + k]!;
      if ((d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    const min = n === 1 ? 0x80 : n === 2 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1;
}

// ---- secrets --------------------------------------------------------------------------------------

/**
 * Whether a secret file is kept from other users: no access for the world, no writing by the
 * group, and reading by the group only in the layout deploy/install.sh makes (owner root, the
 * service's group: /etc/coolctl is root:coolctl 0750). The one check for every secret file.
 */
export function secretModeRefusal(full: string, st: Pick<Stats, 'mode' | 'uid'>): FileRefusal | undefined {
  const perm = st.mode & 0o777;
  const mode = perm.toString(8).padStart(4, '0');
  const fix = `chmod 600 ${full} (owned by the service user)`;
  if (perm & 0o007)
    return { message: `${full} is open to every user on this machine (mode ${mode})`, allowed: fix };
  if (perm & 0o020) return { message: `${full} is writable by its group (mode ${mode})`, allowed: fix };
  if (perm & 0o040 && st.uid !== 0)
    return {
      message: `${full} is readable by its group (mode ${mode}) and not owned by root`,
      allowed: `${fix}, or chown root:coolctl and chmod 640 it as deploy/install.sh lays out /etc/coolctl`,
    };
  return undefined;
}

/** A secret file's bytes: a regular file of at most 64 KB that only its owner (and root's service group) can read. */
export async function readSecretFile(full: string): Promise<FileRead<Buffer>> {
  return secretBytes(full, await readBounded(full, SECRET_FILE_MAX_BYTES, 'secret file'));
}

function secretBytes(full: string, r: FileRead<Bounded>): FileRead<Buffer> {
  if (!r.ok) return r;
  const bad = secretModeRefusal(full, r.value.st);
  return bad ? { ok: false, ...bad } : { ok: true, value: r.value.bytes };
}

/**
 * The one rule for a secret kept as a line of text (a password, the cluster secret, a header
 * value): UTF-8, surrounding whitespace is not part of it (`echo` adds a newline, editors add
 * more), not empty, and a single line.
 */
export function secretLine(bytes: Uint8Array, full: string): FileRead<string> {
  if (!isUtf8(bytes))
    return refuse(`${full} is not UTF-8 text`, 'the secret as one line of text, e.g. openssl rand -hex 32');
  const text = Buffer.from(bytes).toString('utf8').trim();
  if (text.length === 0) return refuse(`${full} is empty`, 'a file holding the secret on one line');
  if (/[\r\n]/.test(text)) return refuse(`${full} holds more than one line`, 'the secret alone, on one line');
  return { ok: true, value: text };
}

/** A secret file read and checked by the rules above: its one line. */
export async function readSecretLine(full: string): Promise<FileRead<string>> {
  const bytes = await readSecretFile(full);
  return bytes.ok ? secretLine(bytes.value, full) : bytes;
}
