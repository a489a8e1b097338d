// The controller's HTTP API driven from its own OpenAPI description, from outside: a real controller
// process (etcd, the simulator, the secure control plane: identities and roles) and, for every
// operation /openapi.json lists, hostile requests over real sockets — missing, extra and wrongly
// typed fields, huge and deeply nested values, unicode that rewrites terminals, numbers at and past
// their limits, wrong content types, empty and truncated bodies, duplicate and prototype keys, path
// parameters that climb or hold NUL, repeated query strings — and every route without an identity,
// with a role too low, with an expired and a revoked token. What holds for every answer: it comes
// within a deadline; it is never a 5xx but a declared 503; its status is one the operation declares;
// a 4xx carries {error: COOLCTL_E_…, message, details}; JSON conforms to the declared schema; no
// secret sent comes back. Afterwards: nothing was steered without the role, no secret is in the
// node's log, and the node is healthy with its loops ticking. Seeded: the same requests every run.

import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../firmware-sim/random.ts';
import { newToken } from '../../src/api/auth/credentials.ts';
import { waitFor } from '../helpers.ts';
import { HARNESS_PASSWORD } from '../support/api-seed.ts';
import { Hall } from '../support/hall.ts';

/** Every request's deadline: an answer later than this is a hang. */
const DEADLINE_MS = 5000;
/** The hall's etcd prefix (test/support/hall.ts), where a token record can be planted. */
const PREFIX = '/coolctl-chaos';
const PASSWORD = 'fuzz password 12345';
const WRONG_PASSWORD = 'not the password 1';
const rnd = mulberry32(0x5eed);

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  ms: number;
}
interface Sent {
  op: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  /** What the request carried that must never come back (a token, a password). */
  secrets: string[];
  what: string;
}
interface Operation {
  key: string;
  method: string;
  path: string;
  op: {
    parameters?: { in: string; name: string; schema?: Record<string, unknown> }[];
    requestBody?: { content?: Record<string, { schema?: Record<string, unknown> }> };
    responses?: Record<string, { content?: Record<string, { schema?: unknown }> }>;
  };
}

let hall: Hall | undefined;
let base = '';
let node = '';
let logPath = '';
let doc: { paths: Record<string, Record<string, Operation['op']>> } = { paths: {} };
const ops: Operation[] = [];
const tokens: Record<'admin' | 'operator' | 'viewer' | 'expired' | 'revoked', string> = {
  admin: '',
  operator: '',
  viewer: '',
  expired: '',
  revoked: '',
};
/** Every secret the test ever held: none may show in an answer it did not mint, nor in a log line. */
const secrets = new Set<string>([PASSWORD, HARNESS_PASSWORD, WRONG_PASSWORD]);
const violations: string[] = [];
const counts = new Map<string, number>();
/** Answers by operation and status: `POST /api/v1/auth/sign-in 400`. */
const answered = new Map<string, number>();
let sentTotal = 0;
let ajv: Ajv;
const validators = new Map<string, ValidateFunction>();

function raw(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string | Buffer,
  localAddress?: string,
): Promise<Answer> {
  const url = new URL(base);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    // A length always, as every client sends one with a body (node would send a GET's or DELETE's
    // body unframed, which is a malformed request, not the one meant).
    const length = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) };
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: { ...length, ...headers },
        timeout: DEADLINE_MS,
        ...(localAddress ? { localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
            ms: performance.now() - t0,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${DEADLINE_MS} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

function json(headers: Record<string, string>, extra: Record<string, string> = {}) {
  return { ...headers, 'content-type': 'application/json', ...extra };
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function api(method: string, path: string, token: string, body?: unknown) {
  const a = await raw(
    method,
    path,
    body === undefined ? bearer(token) : json(bearer(token)),
    body === undefined ? undefined : JSON.stringify(body),
  );
  if (a.status >= 300) throw new Error(`${method} ${path}: ${a.status} ${a.text}`);
  return JSON.parse(a.text) as Record<string, unknown>;
}

function validatorFor(o: Operation, status: number): ValidateFunction | undefined {
  const key = `${o.key} ${status}`;
  if (validators.has(key)) return validators.get(key);
  const schema = o.op.responses?.[String(status)]?.content?.['application/json']?.schema;
  const v = schema
    ? ajv.compile({
        $ref: `openapi#/paths/${o.path.replaceAll('~', '~0').replaceAll('/', '~1')}/${o.method.toLowerCase()}/responses/${status}/content/application~1json/schema`,
      })
    : undefined;
  validators.set(key, v as ValidateFunction);
  return v;
}

/** Sends one request and checks what every answer must hold; a broken promise becomes a violation. */
async function probe(
  o: Operation,
  s: Omit<Sent, 'op' | 'method'> & { method?: string },
): Promise<Answer | null> {
  const method = s.method ?? o.method;
  const tag = `${method} ${o.path} [${s.what}] ${s.path.slice(0, 80)}`;
  sentTotal++;
  counts.set(o.key, (counts.get(o.key) ?? 0) + 1);
  let a: Answer;
  try {
    a = await raw(method, s.path, s.headers, s.body, o.key === SIGN_IN ? nextClientAddress() : undefined);
  } catch (err) {
    violations.push(`${tag}: ${(err as Error).message}`);
    return null;
  }
  answered.set(`${o.key} ${a.status}`, (answered.get(`${o.key} ${a.status}`) ?? 0) + 1);
  const declared = Object.keys(o.op.responses ?? {});
  if (a.status >= 500 && !(a.status === 503 && declared.includes('503')))
    violations.push(`${tag}: ${a.status} ${a.text.slice(0, 200)}`);
  else if (!declared.includes(String(a.status)))
    violations.push(
      `${tag}: status ${a.status} not declared (${declared.join(',')}): ${a.text.slice(0, 160)}`,
    );
  const type = String(a.headers['content-type'] ?? '');
  let body: unknown;
  if (type.startsWith('application/json')) {
    try {
      body = JSON.parse(a.text);
    } catch {
      violations.push(`${tag}: answer is not JSON: ${a.text.slice(0, 100)}`);
    }
  }
  if (a.status >= 400) {
    const b = body as { error?: unknown; message?: unknown; details?: unknown } | undefined;
    if (
      !b ||
      typeof b.error !== 'string' ||
      !/^COOLCTL_E_[A-Z_]+$/.test(b.error) ||
      typeof b.message !== 'string' ||
      !Array.isArray(b.details) ||
      !b.details.every((d) => typeof d === 'string')
    )
      violations.push(`${tag}: ${a.status} outside the error contract: ${a.text.slice(0, 200)}`);
  }
  if (body !== undefined && declared.includes(String(a.status))) {
    const v = validatorFor(o, a.status);
    if (v && !v(body))
      violations.push(`${tag}: ${a.status} answer breaks its schema: ${ajv.errorsText(v.errors)}`);
  }
  for (const secret of s.secrets)
    if (secret && a.text.includes(secret)) violations.push(`${tag}: the answer echoes a secret it was sent`);
  if (a.ms > DEADLINE_MS) violations.push(`${tag}: answered after ${Math.round(a.ms)} ms`);
  return a;
}

// ---- what is sent ---------------------------------------------------------------------------

const LONG = 'x'.repeat(10_000);
const HUGE = 'y'.repeat(70_000); // past the 64 KB body limit
const DEEP = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
const DEEP_OBJ = `${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}`;
/** Strings nobody should store or echo raw: RTL override, NUL, ANSI escapes, a lone surrogate, BOM. */
const NASTY_STRINGS = [
  '\u202eevil',
  'a\u0000b',
  '\u001b[31mred\u001b[0m',
  '\r\nX-Injected: 1',
  '\ufeffbom',
  '💥'.repeat(40),
  '',
  ' ',
  '__proto__',
  '../../etc/passwd',
  LONG,
];
/** JSON texts of values that are wrong or at the edge for any field, as raw JSON (some are not JSON). */
const NASTY_VALUES = [
  'null',
  'true',
  '[]',
  '{}',
  '"25"',
  '"NaN"',
  '"Infinity"',
  '1e309',
  '-1e309',
  '-0',
  '9007199254740993',
  '-9007199254740993',
  '0.1',
  '1e-400',
  '"\\ud800"',
  '"\\udfff\\ud800"',
  '[30]',
  '{"$gt":0}',
  JSON.stringify(LONG),
  ...NASTY_STRINGS.slice(0, 6).map((x) => JSON.stringify(x)),
];

/** A body that passes the schema (so only the one thing changed is wrong). */
function validBody(o: Operation): Record<string, unknown> {
  switch (o.key) {
    case 'POST /api/v1/groups/{id}/commands':
      return { fanPct: 55 };
    case 'POST /api/v1/groups/{id}/switchover':
      return { to: node };
    case 'PUT /api/v1/groups/{id}/overrides/{ahu}':
      return { fanPct: 60 };
    case 'POST /api/v1/auth/sign-in':
      return { name: 'fuzz-viewer', password: WRONG_PASSWORD, as: 'token' };
    case 'POST /api/v1/users':
      return { name: `fz${Math.floor(rnd() * 1e9)}`, role: 'viewer', password: PASSWORD };
    case 'POST /api/v1/tokens':
      return { label: 'fuzz', user: 'fuzz-viewer', ttlS: 60 };
    case 'POST /api/v1/alarms/{alarm}/shelve':
      return { durationS: 600 };
    default:
      return {};
  }
}

function bodyFields(o: Operation): string[] {
  const s = o.op.requestBody?.content?.['application/json']?.schema as
    | { properties?: Record<string, unknown> }
    | undefined;
  return Object.keys(s?.properties ?? {});
}

/** Path parameters that resolve to things that exist (a group, a unit), or to nothing. */
let realParams: Record<string, string> = {};
const HOSTILE_SEGMENTS = [
  '..',
  '%2e%2e',
  '..%2f..%2f',
  '%00',
  'a%00b',
  '%zz',
  '%ED%A0%80',
  '%E2%80%AEevil',
  '%1b%5b31m',
  '__proto__',
  'constructor',
  'hasOwnProperty',
  'nope',
  'x'.repeat(5000),
  '%20',
  '0123456789abcdef',
  'ack',
];

function pathOf(o: Operation, params: Record<string, string>): string {
  return o.path.replace(/\{(\w+)\}/g, (_, k: string) => params[k] ?? realParams[k] ?? 'x');
}

/** Requests for one operation, all as admin unless `as` says (the identity matrix is separate). */
function hostile(o: Operation): Omit<Sent, 'op'>[] {
  const out: Omit<Sent, 'op'>[] = [];
  const changes = !['GET', 'HEAD'].includes(o.method);
  const url = pathOf(o, {});
  const who = o.key === SIGN_OUT ? burn : tokens.admin;
  const admin = json(bearer(who));
  const secretsOf = [who];
  const add = (what: string, path: string, headers: Record<string, string>, body?: string | Buffer) =>
    out.push({
      method: o.method,
      what,
      path,
      headers,
      ...(body === undefined ? {} : { body }),
      secrets: secretsOf,
    });

  // Path parameters that climb, hold NUL, are too long, or name nothing.
  for (const k of (o.op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name))
    for (const seg of HOSTILE_SEGMENTS)
      add(`path ${k}`, pathOf(o, { [k]: seg }), admin, changes ? JSON.stringify(validBody(o)) : undefined);

  // Query strings: unknown, repeated, and numbers past their limits.
  const query = (o.op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
  const qs = [
    'evil=1',
    '__proto__[admin]=1',
    'constructor[prototype][x]=1',
    `x=${'q'.repeat(3000)}`,
    '%zz=1',
    'a=%00',
  ];
  for (const q of query)
    qs.push(
      `${q}=1&${q}=2`,
      `${q}=`,
      `${q}=NaN`,
      `${q}=1e309`,
      `${q}=-0`,
      `${q}=-1`,
      `${q}=9007199254740993`,
      `${q}=1.5`,
      `${q}=%00`,
      `${q}=${'9'.repeat(400)}`,
      `${q}[]=1`,
      `${q}[a]=1`,
    );
  for (const q of qs) add(`query ${q.slice(0, 30)}`, `${url}?${q}`, admin, changes ? '{}' : undefined);

  if (!changes) {
    // A body on a read is ignored or refused, never a failure.
    add('GET with a body', url, admin, '{"a":1}');
    return out;
  }
  const valid = validBody(o);
  const with_ = (patch: string) => {
    const inner = JSON.stringify(valid).slice(1, -1);
    return `{${inner}${inner && patch ? ',' : ''}${patch}}`;
  };
  // Every field wrong in every way; a required one left out; an unknown one; prototype keys.
  for (const f of bodyFields(o)) {
    for (const v of NASTY_VALUES) {
      const { [f]: _, ...rest } = valid;
      const inner = JSON.stringify(rest).slice(1, -1);
      add(
        `field ${f}=${v.slice(0, 20)}`,
        url,
        admin,
        `{${inner}${inner ? ',' : ''}${JSON.stringify(f)}:${v}}`,
      );
    }
    const { [f]: _, ...rest } = valid;
    add(`without ${f}`, url, admin, JSON.stringify(rest));
  }
  for (const patch of [
    '"isAdmin":true',
    '"__proto__":{"role":"admin"}',
    '"constructor":{"prototype":{"x":1}}',
    `"${'k'.repeat(2000)}":1`,
    '"\\u202e":1',
    '"a\\u0000":1',
  ])
    add(`extra ${patch.slice(0, 24)}`, url, admin, with_(patch));
  // Duplicate keys: the last one wins in JSON.parse — the schema must see that one, or refuse.
  for (const f of bodyFields(o)) add(`duplicate ${f}`, url, admin, with_(`${JSON.stringify(f)}:null`));
  // Whole bodies that are not an object, are cut off, too big or too deep.
  for (const b of [
    '',
    'null',
    '[]',
    '"x"',
    '1',
    '{',
    '{"a":',
    JSON.stringify(valid).slice(0, -1),
    '\u0000',
    '\ufeff{}',
    DEEP,
    DEEP_OBJ,
    `{"x":"${HUGE}"}`,
    JSON.stringify({ list: Array.from({ length: 20_000 }, (_, i) => i) }),
    Buffer.from([0xff, 0xfe, 0x7b, 0x7d]).toString('latin1'),
  ])
    add(`body ${b.slice(0, 16)}`, url, admin, b);
  // Wrong content types, and none.
  for (const type of [
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/json; charset=utf-16',
    'application/JSON',
    'application/json-patch+json',
    'application/xml',
    'xxx',
  ])
    add(`type ${type}`, url, { ...bearer(who), 'content-type': type }, JSON.stringify(valid));
  add('no type', url, bearer(who), JSON.stringify(valid));
  // utf-16 bytes sent as JSON.
  add('utf-16 body', url, admin, Buffer.from(JSON.stringify(valid), 'utf16le'));
  return out;
}

/** The identity matrix: no identity, a forged, an expired and a revoked token, and every role. */
function identities(o: Operation): Omit<Sent, 'op'>[] {
  const changes = !['GET', 'HEAD'].includes(o.method);
  const body = changes ? JSON.stringify(validBody(o)) : undefined;
  const url = pathOf(o, {});
  const forged = newToken().token;
  const out: Omit<Sent, 'op'>[] = [];
  const variants: [string, Record<string, string>, string[]][] = [
    ['no identity', {}, []],
    ['forged token', bearer(forged), [forged]],
    ['malformed bearer', { authorization: `Bearer ${'a'.repeat(5000)}` }, []],
    [
      'basic auth',
      { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}` },
      [PASSWORD],
    ],
    ['bogus cookie', { cookie: `coolctl_session=${forged}`, 'x-coolctl-request': '1' }, [forged]],
    ['expired token', bearer(tokens.expired), [tokens.expired]],
    ['revoked token', bearer(tokens.revoked), [tokens.revoked]],
    ['viewer', bearer(o.key === SIGN_OUT ? burn : tokens.viewer), [tokens.viewer]],
    ['operator', bearer(o.key === SIGN_OUT ? burn : tokens.operator), [tokens.operator]],
  ];
  for (const [what, h, s] of variants)
    out.push({
      method: o.method,
      what,
      path: url,
      headers: changes ? json(h) : h,
      ...(body === undefined ? {} : { body }),
      secrets: s,
    });
  return out;
}

/**
 * Sign-in is limited per client address (10 a minute): each of its requests comes from another
 * loopback address (127.0.0.0/8), so its body is checked rather than the limit answering first.
 */
const SIGN_IN = 'POST /api/v1/auth/sign-in';
let clientAddresses = 0;
const nextClientAddress = () => `127.0.${Math.floor(clientAddresses / 250)}.${2 + (clientAddresses++ % 250)}`;

/** Sign-out revokes the token it is sent with: it gets tokens minted to be burnt. */
const SIGN_OUT = 'POST /api/v1/auth/sign-out';
let burn = '';
async function mintBurn(): Promise<string> {
  burn = String(
    (await api('POST', '/api/v1/tokens', tokens.admin, { label: 'burn', user: 'fuzz-viewer' })).token,
  );
  secrets.add(burn);
  return burn;
}

const WEAK = new Set([
  'no identity',
  'forged token',
  'malformed bearer',
  'basic auth',
  'bogus cookie',
  'expired token',
  'revoked token',
]);

// ---- the run --------------------------------------------------------------------------------

beforeAll(async () => {
  hall = await Hall.start({ name: 'openapi-fuzz', controllers: 1, groups: 2, airHandlers: 4 });
  node = hall.nodes[0]!;
  base = hall.apiUrl(node);
  logPath = join(hall.dir, `${node}.log`);
  tokens.admin = hall.apiAdmin!.token;
  for (const role of ['viewer', 'operator'] as const) {
    await api('POST', '/api/v1/users', tokens.admin, { name: `fuzz-${role}`, role, password: PASSWORD });
    tokens[role] = String(
      (await api('POST', '/api/v1/tokens', tokens.admin, { label: 'fuzz', user: `fuzz-${role}` })).token,
    );
  }
  const revoked = await api('POST', '/api/v1/tokens', tokens.admin, {
    label: 'revoked',
    user: 'fuzz-operator',
  });
  tokens.revoked = String(revoked.token);
  await api('DELETE', `/api/v1/tokens/${String(revoked.id)}`, tokens.admin);
  // An operator's token whose expiry has passed, as the hourly sweep has not yet removed it.
  const t = newToken();
  const at = Date.now() - 3_600_000;
  await hall.etcdctl([
    'put',
    `${PREFIX}/auth/tokens/${t.id}`,
    JSON.stringify({
      id: t.id,
      user: 'fuzz-operator',
      kind: 'token',
      label: 'expired',
      hash: t.hash,
      createdAtMs: at,
      expiresAtMs: at + 60_000,
    }),
  ]);
  tokens.expired = t.token;
  for (const s of Object.values(tokens)) secrets.add(s);

  const got = await raw('GET', '/openapi.json', bearer(tokens.viewer));
  expect(got.status).toBe(200);
  doc = JSON.parse(got.text);
  ajv = new Ajv({ strict: false, validateFormats: false, allErrors: false });
  ajv.addSchema(doc, 'openapi');
  for (const [path, byMethod] of Object.entries(doc.paths))
    for (const [m, op] of Object.entries(byMethod))
      ops.push({ key: `${m.toUpperCase()} ${path}`, method: m.toUpperCase(), path, op });
  const cluster = await api('GET', '/api/v1/cluster', tokens.viewer);
  const group = (cluster.groups as { id: string }[])[0]!.id;
  const g = await api('GET', `/api/v1/groups/${group}`, tokens.viewer);
  const alarms = await api('GET', '/api/v1/alarms?state=all', tokens.viewer);
  realParams = {
    id: group,
    ahu: (g.units as { ahu: string }[])[0]!.ahu,
    name: 'nobody-here',
    tokenId: '0123456789abcdef',
    alarm: (alarms.alarms as { id: string }[])[0]?.id ?? 'unit-tripped~g~s~1764800000000',
    file: 'dashboard.js',
  };
}, 120_000);

afterAll(async () => {
  await hall?.stopAll();
});

describe('the API against its own OpenAPI description', () => {
  it('describes operations to fuzz', () => {
    expect(ops.length).toBeGreaterThan(20);
  });

  it('answers every hostile request within its deadline, as declared, inside the error contract', async () => {
    await mintBurn();
    const check = async (o: Operation, sent: Omit<Sent, 'op'>) => {
      const burns = o.key === SIGN_OUT && (sent.what === 'viewer' || sent.what === 'operator');
      const s = burns ? { ...sent, headers: { ...sent.headers, authorization: `Bearer ${burn}` } } : sent;
      const a = await probe(o, s);
      if (a && o.key === SIGN_OUT && a.status === 200) await mintBurn();
      return a;
    };
    const before = await api('GET', `/api/v1/groups/${realParams.id}`, tokens.viewer);
    // Identities below operator first: nothing may be steered by them.
    const matrix = ops.flatMap((o) => identities(o).map((s) => ({ o, s })));
    for (const pass of [(w: string) => w !== 'operator', (w: string) => w === 'operator']) {
      for (const { o, s } of matrix.filter((x) => pass(x.s.what))) {
        const a = await check(o, s);
        if (!a) continue;
        const access = accessOf(o);
        if (access !== 'public' && WEAK.has(s.what) && a.status !== 401)
          violations.push(`${o.key} [${s.what}]: ${a.status}, not 401`);
        const below =
          (s.what === 'viewer' && (access === 'operator' || access === 'admin')) ||
          (s.what === 'operator' && access === 'admin');
        if (below && a.status !== 403) violations.push(`${o.key} [${s.what}]: ${a.status}, not 403`);
      }
      if (pass('viewer')) {
        const after = await api('GET', `/api/v1/groups/${realParams.id}`, tokens.viewer);
        expect(after.operator, 'no weak identity steered the group').toEqual(before.operator);
      }
    }

    // Then every hostile body, query and path: sign-out's one at a time (each may burn its token),
    // the rest a few at a time.
    for (const s of hostile(ops.find((o) => o.key === SIGN_OUT)!))
      await check(ops.find((o) => o.key === SIGN_OUT)!, {
        ...s,
        headers: { ...s.headers, authorization: `Bearer ${burn}` },
        secrets: [burn],
      });
    const all = ops.filter((o) => o.key !== SIGN_OUT).flatMap((o) => hostile(o).map((s) => ({ o, s })));
    for (let i = 0; i < all.length; i += 4)
      await Promise.all(all.slice(i, i + 4).map(({ o, s }) => check(o, s)));

    for (const o of ops) expect(counts.get(o.key) ?? 0, o.key).toBeGreaterThan(5);
    expect(sentTotal).toBeLessThan(5000);
    // Sign-in's bodies met its schema, not only its limiter.
    expect(answered.get(`${SIGN_IN} 400`) ?? 0).toBeGreaterThan(50);
    expect(violations.slice(0, 60), `${violations.length} violations in ${sentTotal} requests`).toEqual([]);
  }, 120_000);

  it('keeps the node running, its loops ticking, and no secret in its log', async () => {
    // Hand the group back to the control law: the run paused it and set overrides as an operator.
    const g = `/api/v1/groups/${realParams.id}`;
    await api('POST', `${g}/resume`, tokens.admin);
    const units = (await api('GET', g, tokens.viewer)).units as { ahu: string }[];
    for (const u of units) await api('DELETE', `${g}/overrides/${u.ahu}`, tokens.admin);
    const health = await raw('GET', '/healthz', {});
    expect(health.status, health.text).toBe(200);
    const up = (await api('GET', '/api/v1/cluster', tokens.viewer)).groups as { driving: boolean }[];
    await waitFor('every group driven', async () =>
      ((await api('GET', '/api/v1/cluster', tokens.viewer)).groups as { driving: boolean }[]).every(
        (g) => g.driving,
      ),
    );
    expect(up.length).toBeGreaterThan(0);
    const log = await readFile(logPath, 'utf8');
    const trail = (await raw('GET', '/api/v1/audit?limit=1000', bearer(tokens.admin))).text;
    expect(trail).toContain('fuzz-operator');
    for (const s of secrets) {
      expect(log.includes(s), 'a secret in the node log').toBe(false);
      expect(trail.includes(s), 'a secret in the audit trail').toBe(false);
    }
  });
});

/** The least role an operation needs, as its description and the guard agree (public ones listed). */
function accessOf(o: Operation): 'public' | 'viewer' | 'operator' | 'admin' {
  if (['/healthz', '/readyz', '/', '/ui/{file}', '/api/v1/auth/sign-in'].includes(o.path)) return 'public';
  if (/^\/api\/v1\/(users|tokens)/.test(o.path)) return 'admin';
  if (o.method === 'GET' || o.path === '/api/v1/auth/sign-out') return 'viewer';
  return 'operator';
}
