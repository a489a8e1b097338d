// Settings of the links that leave the process (etcd, the sensor broker): where their TLS material
// and credentials are. Secrets are read from files at load, never taken from a URL (a URL is logged
// and shown in errors), and no problem message ever quotes a secret — only the path it came from.
// One owner for these settings: the controller config embeds the schemas and calls the loaders.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Type as T } from '@sinclair/typebox';
import type { EtcdSecurity } from '../cluster/etcd/etcd-client.ts';
import type { ConfigProblem } from '../errors.ts';

const FilePath = (description: string) => T.String({ minLength: 1, description });

export const TlsFilesSchema = T.Object(
  {
    caFile: FilePath('PEM CA certificate(s) that signed the server’s certificate; relative to this file'),
    certFile: T.Optional(FilePath('PEM client certificate (mutual TLS); relative to this file')),
    keyFile: T.Optional(FilePath('PEM key of certFile; relative to this file')),
  },
  { additionalProperties: false },
);

export const EtcdSettingsSchema = T.Object(
  {
    hosts: T.Array(T.String({ pattern: '^https?://' }), { minItems: 1, description: 'etcd client URLs' }),
    tls: T.Optional(TlsFilesSchema),
    auth: T.Optional(
      T.Object(
        {
          username: T.String({
            minLength: 1,
            description: 'etcd user (its role should reach only the prefix)',
          }),
          passwordFile: FilePath('file holding the etcd user’s password; relative to this file'),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const MqttSettingsSchema = T.Object(
  {
    url: T.String({ pattern: '^mqtts?://', description: 'broker URL, without credentials' }),
    username: T.Optional(T.String({ minLength: 1 })),
    passwordFile: T.Optional(FilePath('file holding the broker password; relative to this file')),
    caFile: T.Optional(FilePath('PEM CA certificate(s) of the broker (mqtts://); relative to this file')),
    certFile: T.Optional(FilePath('PEM client certificate; relative to this file')),
    keyFile: T.Optional(FilePath('PEM key of certFile; relative to this file')),
  },
  { additionalProperties: false },
);

export interface TlsFiles {
  caFile: string;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}
export interface EtcdSettings {
  hosts: string[];
  tls?: TlsFiles | undefined;
  auth?: { username: string; passwordFile: string } | undefined;
}
export interface MqttSettings {
  url: string;
  username?: string | undefined;
  passwordFile?: string | undefined;
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}

/** The sensor broker link, ready to dial: material read, paths resolved. */
export interface MqttLink {
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  tls?: { ca?: Buffer | undefined; cert?: Buffer | undefined; key?: Buffer | undefined } | undefined;
}

/** Keys whose value is a link secret (passwords, the peer PSK, private keys), in a log object. */
const SECRET_LOG_KEYS: ReadonlySet<string> = new Set(['password', 'passwd', 'secret', 'psk', 'privateKey']);
/** How deep a log object is searched: `{ password }`, `{ mqtt: { password } }`, `{ etcd: { auth: { password } } }`. */
const SECRET_LOG_DEPTH = 2;
export const REDACTED = '[REDACTED]';

/**
 * A log object with every link secret replaced by `[REDACTED]`: a key named in SECRET_LOG_KEYS,
 * or `key` under `tls`, at the top of the object and up to two levels down. Belt and braces: no
 * code logs these on purpose. The object itself is never changed: what holds a secret is copied
 * on the way down to it, and an object without one is returned as it is (no allocation — every
 * line of the daemon passes here; pino's path-based redaction re-parsed its 15 paths for each
 * value of each line: ~3.5 µs a line, against ~0.6 µs for the whole line with this).
 */
export function redactSecrets<T>(obj: T): T {
  return scrub(obj, 0, undefined) as T;
}

function scrub(value: unknown, depth: number, parentKey: string | undefined): unknown {
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value;
  let copy: Record<string, unknown> | unknown[] | undefined;
  const src = value as Record<string, unknown>;
  for (const key of Object.keys(src)) {
    const v = src[key];
    let next = v;
    if (v !== undefined && (SECRET_LOG_KEYS.has(key) || (key === 'key' && parentKey === 'tls')))
      next = REDACTED;
    else if (depth < SECRET_LOG_DEPTH) next = scrub(v, depth + 1, key);
    if (next === v) continue;
    copy ??= Array.isArray(value) ? value.slice() : errorAsObject(value);
    (copy as Record<string, unknown>)[key] = next;
  }
  return copy ?? value;
}

/** A shallow copy that keeps what JSON would show of an Error (its message and stack are not enumerable). */
function errorAsObject(value: object): Record<string, unknown> {
  return value instanceof Error
    ? { ...value, type: value.name, message: value.message, stack: value.stack }
    : { ...value };
}

/** Whether two broker links dial the same way (a changed password or certificate reconnects). */
export function sameMqttLink(a: MqttLink | undefined, b: MqttLink | undefined): boolean {
  if (!a || !b) return a === b;
  const same = (x: Buffer | undefined, y: Buffer | undefined) => (x && y ? x.equals(y) : x === y);
  return (
    a.url === b.url &&
    a.username === b.username &&
    a.password === b.password &&
    same(a.tls?.ca, b.tls?.ca) &&
    same(a.tls?.cert, b.tls?.cert) &&
    same(a.tls?.key, b.tls?.key)
  );
}

/** Whether a URL carries a user or password (`scheme://user:pass@host`): such a URL leaks them into logs. */
export function urlHasCredentials(url: string): boolean {
  try {
    const u = new URL(url);
    return u.username !== '' || u.password !== '';
  } catch {
    return /^[a-z]+:\/\/[^/]*@/i.test(url);
  }
}

/** Rules checked at parse time: credentials never in a URL, TLS settings complete and consistent. */
export function linkRules(c: {
  cluster: { etcd: string[] | EtcdSettings };
  sensors?: { mqttUrl?: string | undefined; mqtt?: MqttSettings | undefined } | undefined;
}): { path: string; message: string; allowed: string }[] {
  const problems: { path: string; message: string; allowed: string }[] = [];
  const etcd = Array.isArray(c.cluster.etcd) ? { hosts: c.cluster.etcd } : c.cluster.etcd;
  const hostsPath = Array.isArray(c.cluster.etcd) ? '/cluster/etcd' : '/cluster/etcd/hosts';
  etcd.hosts.forEach((h, i) => {
    if (urlHasCredentials(h))
      problems.push({
        path: `${hostsPath}/${i}`,
        message: 'credentials in an etcd URL would be written to logs and errors',
        allowed: 'a URL without user:password@, and cluster.etcd.auth { username, passwordFile }',
      });
  });
  if (!Array.isArray(c.cluster.etcd)) {
    const tls = c.cluster.etcd.tls;
    if (tls && etcd.hosts.some((h) => h.startsWith('http://')))
      problems.push({
        path: hostsPath,
        message: 'TLS is configured but some etcd URLs are http://',
        allowed: 'https:// URLs for every member',
      });
    if (!tls && etcd.hosts.some((h) => h.startsWith('https://')))
      problems.push({
        path: '/cluster/etcd/tls',
        message: 'https:// etcd URLs need the CA that signed the members’ certificates',
        allowed: 'tls: { caFile, certFile, keyFile }',
      });
    if (tls) problems.push(...pairRule('/cluster/etcd/tls', tls));
  }
  const urls: [string, string][] = [];
  if (c.sensors?.mqttUrl !== undefined) urls.push(['/sensors/mqttUrl', c.sensors.mqttUrl]);
  const mqtt = c.sensors?.mqtt;
  if (mqtt) urls.push(['/sensors/mqtt/url', mqtt.url]);
  for (const [path, url] of urls) {
    if (urlHasCredentials(url))
      problems.push({
        path,
        message: 'credentials in the broker URL would be written to logs and errors',
        allowed: 'a URL without user:password@, and sensors.mqtt { username, passwordFile }',
      });
  }
  if (c.sensors?.mqttUrl !== undefined && mqtt)
    problems.push({
      path: '/sensors/mqttUrl',
      message: 'both sensors.mqttUrl and sensors.mqtt are set',
      allowed: 'one of them: sensors.mqtt { url, … } (mqttUrl is its short form without credentials)',
    });
  if (mqtt) {
    if ((mqtt.username === undefined) !== (mqtt.passwordFile === undefined))
      problems.push({
        path: '/sensors/mqtt',
        message: 'username and passwordFile go together',
        allowed: 'both, or neither',
      });
    const tlsFiles = mqtt.caFile ?? mqtt.certFile ?? mqtt.keyFile;
    if (tlsFiles !== undefined && !mqtt.url.startsWith('mqtts://'))
      problems.push({
        path: '/sensors/mqtt/url',
        message: 'TLS files are set but the URL is mqtt:// (plain)',
        allowed: 'an mqtts:// URL',
      });
    problems.push(...pairRule('/sensors/mqtt', mqtt));
  }
  return problems;
}

function pairRule(
  path: string,
  t: { certFile?: string | undefined; keyFile?: string | undefined },
): { path: string; message: string; allowed: string }[] {
  if ((t.certFile === undefined) === (t.keyFile === undefined)) return [];
  return [{ path, message: 'certFile and keyFile go together', allowed: 'both, or neither' }];
}

/** Reads what the etcd settings name; every unreadable file is one problem at its path. */
export async function loadEtcdSecurity(
  settings: EtcdSettings,
  base: string,
  file: string,
  problems: ConfigProblem[],
): Promise<EtcdSecurity> {
  const read = reader(base, file, problems);
  const security: EtcdSecurity = {};
  if (settings.tls) {
    const ca = await read('/cluster/etcd/tls/caFile', settings.tls.caFile);
    const cert = await read('/cluster/etcd/tls/certFile', settings.tls.certFile);
    const key = await read('/cluster/etcd/tls/keyFile', settings.tls.keyFile);
    if (ca) security.tls = { ca, cert, key };
  }
  if (settings.auth) {
    const password = await read('/cluster/etcd/auth/passwordFile', settings.auth.passwordFile, true);
    if (password) security.auth = { username: settings.auth.username, password: password.toString('utf8') };
  }
  return security;
}

/**
 * This node's peer-channel keys (`cluster.peerKeysFile`, written by scripts/peer-keys.ts): one line
 * per peer, `NODE HEX` (64 hex digits); `#` starts a comment. Problems name the line, never a key.
 */
export async function loadPeerKeys(
  name: string,
  base: string,
  file: string,
  self: string,
  nodes: string[],
  problems: ConfigProblem[],
): Promise<Map<string, Buffer> | undefined> {
  const path = '/cluster/peerKeysFile';
  const text = (await reader(base, file, problems)(path, name))?.toString('utf8');
  if (text === undefined) return undefined;
  const keys = new Map<string, Buffer>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const m = /^(\S+)\s+([0-9a-fA-F]{64})$/.exec(line);
    if (!m) {
      problems.push({
        file,
        path,
        message: `${resolve(base, name)} line ${i + 1} is not "NODE HEXKEY"`,
        allowed: 'lines written by scripts/peer-keys.ts',
      });
      return;
    }
    keys.set(m[1]!, Buffer.from(m[2]!, 'hex'));
  });
  const missing = nodes.filter((n) => n !== self && !keys.has(n));
  if (missing.length > 0)
    problems.push({
      file,
      path,
      message: `${resolve(base, name)} has no key for ${missing.join(', ')}`,
      allowed: `a key for every other node (scripts/peer-keys.ts for node ${self})`,
    });
  return keys;
}

/** Reads what the broker settings name. */
export async function loadMqttLink(
  settings: MqttSettings,
  base: string,
  file: string,
  problems: ConfigProblem[],
): Promise<MqttLink> {
  const read = reader(base, file, problems);
  const link: MqttLink = { url: settings.url };
  if (settings.username !== undefined) {
    link.username = settings.username;
    link.password = (await read('/sensors/mqtt/passwordFile', settings.passwordFile, true))?.toString('utf8');
  }
  if (settings.caFile ?? settings.certFile) {
    link.tls = {
      ca: await read('/sensors/mqtt/caFile', settings.caFile),
      cert: await read('/sensors/mqtt/certFile', settings.certFile),
      key: await read('/sensors/mqtt/keyFile', settings.keyFile),
    };
  }
  return link;
}

/**
 * A file reader that records problems instead of throwing. A password file holds one line; its
 * trailing newline is not part of the password (echo adds one). Messages name the path only.
 */
function reader(base: string, file: string, problems: ConfigProblem[]) {
  return async (path: string, name: string | undefined, secret = false): Promise<Buffer | undefined> => {
    if (name === undefined) return undefined;
    const full = resolve(base, name);
    try {
      const bytes = await readFile(full);
      if (!secret) return bytes;
      const text = bytes.toString('utf8').replace(/\r?\n$/, '');
      if (text.length === 0) {
        problems.push({ file, path, message: `${full} is empty`, allowed: 'a file holding the password' });
        return undefined;
      }
      return Buffer.from(text, 'utf8');
    } catch (err) {
      problems.push({
        file,
        path,
        message: `cannot read ${full}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
        allowed: 'a readable file (mode 0600, owned by the service user)',
      });
      return undefined;
    }
  };
}
