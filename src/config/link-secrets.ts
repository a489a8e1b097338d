// Settings of the links that leave the process (etcd, the sensor broker): where their TLS material
// and credentials are. Secrets are read from files at load, never taken from a URL (a URL is logged
// and shown in errors), and no problem message ever quotes a secret — only the path it came from.
// One owner for these settings: the controller config embeds the schemas and calls the loaders.
import { X509Certificate } from 'node:crypto';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { Type as T } from '@sinclair/typebox';
import type { EtcdSecurity } from '../cluster/etcd/etcd-client.ts';
import type { ConfigProblem } from '../errors.ts';
import {
  CERT_FILE_MAX_BYTES,
  type FileRead,
  readBoundedFile,
  readSecretFile,
  readSecretLine,
} from './config-files.ts';

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
    return /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(url);
  }
}

/** Where the credentials of each URL setting go instead; any other URL gets the general answer. */
const URL_CREDENTIALS: readonly { path: RegExp; what: string; instead: string }[] = [
  {
    path: /^\/cluster\/etcd(\/hosts)?\/\d+$/,
    what: 'an etcd URL',
    instead: 'cluster.etcd.auth { username, passwordFile }',
  },
  {
    path: /^\/sensors\/(mqttUrl|mqtt\/url)$/,
    what: 'the broker URL',
    instead: 'sensors.mqtt { username, passwordFile }',
  },
  {
    path: /^\/airHandlers\/\d+\/endpoint\/url$/,
    what: 'an OPC-UA endpoint URL',
    instead: 'endpoint.username and endpoint.passwordFile',
  },
  {
    path: /^\/alarms\/notifications\/webhook\/url$/,
    what: 'the webhook URL',
    instead: 'headerName and headerFile (e.g. Authorization: Basic … in the file)',
  },
];

/**
 * A URL (`scheme://…`) anywhere in a config that carries `user:password@` (or a user alone): refused
 * at its path, without repeating it (it would be written to logs and errors), with where the
 * credentials go instead. Checked on every string of every config file (config-check.ts).
 */
export function urlCredentialProblem(
  value: string,
  path: () => string,
): { path: string; message: string; allowed: string } | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value) || !urlHasCredentials(value)) return undefined;
  const at = path();
  const known = URL_CREDENTIALS.find((u) => u.path.test(at));
  return {
    path: at,
    message: `credentials in ${known?.what ?? 'a URL'} would be written to logs and errors`,
    allowed: `a URL without user:password@, and ${known?.instead ?? 'the secret in a file the config names'}`,
  };
}

/** Rules checked at parse time: TLS settings complete and consistent (credentials in URLs: urlCredentialProblem). */
export function linkRules(c: {
  cluster: { etcd: string[] | EtcdSettings };
  sensors?: { mqttUrl?: string | undefined; mqtt?: MqttSettings | undefined } | undefined;
}): { path: string; message: string; allowed: string }[] {
  const problems: { path: string; message: string; allowed: string }[] = [];
  const etcd = Array.isArray(c.cluster.etcd) ? { hosts: c.cluster.etcd } : c.cluster.etcd;
  const hostsPath = Array.isArray(c.cluster.etcd) ? '/cluster/etcd' : '/cluster/etcd/hosts';
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
  const mqtt = c.sensors?.mqtt;
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

/** Reads what the etcd settings name; every unreadable or broken file is one problem at its path. */
export async function loadEtcdSecurity(
  settings: EtcdSettings,
  base: string,
  file: string,
  problems: ConfigProblem[],
): Promise<EtcdSecurity> {
  const read = reader(base, file, problems);
  const security: EtcdSecurity = {};
  if (settings.tls) {
    const material = await read.tls('/cluster/etcd/tls', settings.tls);
    if (material?.ca) security.tls = { ca: material.ca, cert: material.cert, key: material.key };
  }
  if (settings.auth) {
    const password = await read.secret('/cluster/etcd/auth/passwordFile', settings.auth.passwordFile);
    if (password !== undefined) security.auth = { username: settings.auth.username, password };
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
  const text = (await reader(base, file, problems).secretBytes(path, name))?.toString('utf8');
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
    link.password = await read.secret('/sensors/mqtt/passwordFile', settings.passwordFile);
  }
  if (settings.caFile ?? settings.certFile) {
    const material = await read.tls('/sensors/mqtt', settings);
    link.tls = { ca: material?.ca, cert: material?.cert, key: material?.key };
  }
  return link;
}

/** The API's certificate and key (`api.tls`): read and checked as the API will load them. */
export async function checkApiTls(
  settings: { certFile: string; keyFile: string },
  base: string,
  file: string,
  problems: ConfigProblem[],
): Promise<void> {
  await reader(base, file, problems).tls('/api/tls', settings);
}

/**
 * A reader that records problems instead of throwing, each at its setting's path; messages name
 * files, never their contents. Secrets (passwords, keys) must be kept from other users
 * (config-files.ts secretModeRefusal); a password is the file's one line (secretLine); TLS
 * material must parse, and a key must be the certificate's.
 */
function reader(base: string, file: string, problems: ConfigProblem[]) {
  const take = <T>(path: string, r: FileRead<T>): T | undefined => {
    if (r.ok) return r.value;
    problems.push({ file, path, message: r.message, allowed: r.allowed });
    return undefined;
  };
  const bytes = async (path: string, name: string | undefined) =>
    name === undefined
      ? undefined
      : take(path, await readBoundedFile(resolve(base, name), CERT_FILE_MAX_BYTES, 'PEM file'));
  const secretBytes = async (path: string, name: string | undefined) =>
    name === undefined ? undefined : take(path, await readSecretFile(resolve(base, name)));
  return {
    secretBytes,
    secret: async (path: string, name: string | undefined) =>
      name === undefined ? undefined : take(path, await readSecretLine(resolve(base, name))),
    /** CA, certificate and key at `${at}/caFile`, `/certFile`, `/keyFile`; each that fails is one problem. */
    tls: async (
      at: string,
      files: { caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined },
    ) => {
      const ca = await bytes(`${at}/caFile`, files.caFile);
      const cert = await bytes(`${at}/certFile`, files.certFile);
      const key = await secretBytes(`${at}/keyFile`, files.keyFile);
      const full = (name: string | undefined) => resolve(base, name ?? '');
      const bad = (path: string, message: string, allowed: string) =>
        problems.push({ file, path, message, allowed });
      const parses = (pem: Buffer) => {
        try {
          new X509Certificate(pem);
          return true;
        } catch {
          return false;
        }
      };
      if (ca && !parses(ca))
        bad(
          `${at}/caFile`,
          `${full(files.caFile)} holds no PEM certificate`,
          'the PEM certificate(s) of the CA',
        );
      const certOk = cert !== undefined && parses(cert);
      if (cert && !certOk)
        bad(
          `${at}/certFile`,
          `${full(files.certFile)} holds no PEM certificate`,
          'a PEM certificate chain, leaf first',
        );
      if (certOk && key) {
        try {
          createSecureContext({ cert, key });
        } catch {
          // The library's message can quote the PEM it failed on: only the file names go out.
          bad(
            `${at}/keyFile`,
            `${full(files.keyFile)} is not the private key of ${full(files.certFile)} (or not a PEM key)`,
            'the PEM private key that goes with certFile',
          );
        }
      }
      return { ca, cert, key };
    },
  };
}
