// The simulator's HTTP API on a real loopback socket, as a careless client or CI script meets it:
// a body of the wrong content type, a poisoned or malformed body, a typo in a query parameter, a
// method a path does not take (405), an OPC-UA status name no unit can answer, path tricks sent
// byte for byte, and a journal read past its retained window. Each refusal says which field was
// wrong and what is allowed, and changes nothing (docs/sim-api.md).
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSimApi } from '../../firmware-sim/api.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { quietLogger } from '../helpers.ts';

const site = generateSite(demoShape);
const sim = new Simulation({ site, seed: 7, logger: quietLogger });
const api = buildSimApi(sim, quietLogger, { testRoutes: true });
const modbusUnit = site.airHandlers.find((a) => a.protocol !== 'opcua')!.id;
const opcuaUnit = site.airHandlers.find((a) => a.protocol === 'opcua')!.id;
let port = 0;
let base = '';

beforeAll(async () => {
  sim.advance(30, 10);
  await api.listen({ host: '127.0.0.1', port: 0 });
  const addr = api.server.address();
  if (typeof addr !== 'object' || !addr) throw new Error('no address');
  port = addr.port;
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await api.close();
  await sim.stop();
});

interface Refusal {
  error: string;
  message: string;
  details: string[];
}

async function postFaults(body: string, contentType: string | null = 'application/json') {
  const res = await fetch(`${base}/sim/faults`, {
    method: 'POST',
    headers: contentType === null ? {} : { 'content-type': contentType },
    body,
  });
  return { status: res.status, body: (await res.json()) as Refusal & { applied?: number } };
}

async function badRequests(): Promise<number> {
  const s = (await (await fetch(`${base}/sim/state`)).json()) as { api: { badRequests: number } };
  return s.api.badRequests;
}

async function activeFaults(): Promise<unknown[]> {
  return ((await (await fetch(`${base}/sim/faults`)).json()) as { faults: unknown[] }).faults;
}

/** One request written byte for byte (fetch would tidy `..` and `%2e` away before sending). */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    s.setTimeout(5000, () => s.destroy(new Error(`no answer to GET ${path}`)));
    s.on('data', (d: Buffer) => {
      out += d.toString();
    });
    s.on('error', reject);
    s.on('close', () => {
      const [head = '', body = ''] = out.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), body });
    });
    s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  });
}

describe('simulator API: refusals that say what to send instead', () => {
  it('refuses a body that is not JSON by its content type, naming the one allowed, and applies nothing', async () => {
    const trip = JSON.stringify({ fault: 'ahu-trip', ahu: modbusUnit });
    // text/plain: what fetch sends for a string body with no header; before, it reached the
    // route as a string and was refused as "must be an object", the wrong reason.
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/vnd.api+json']) {
      const r = await postFaults(trip, type);
      expect(r.status, type).toBe(415);
      expect(r.body.error, type).toBe('COOLCTL_E_BAD_REQUEST');
      expect(r.body.details, type).toEqual([`content-type: got "${type}", allowed: application/json`]);
    }
    const none = await fetch(`${base}/sim/faults`, { method: 'POST', body: new Uint8Array([123, 125]) });
    expect(none.status).toBe(415);
    expect(((await none.json()) as Refusal).details[0]).toMatch(
      /^content-type: got none, allowed: application\/json$/,
    );
    expect(await activeFaults()).toEqual([]);

    // still read: a charset parameter, and a byte-order mark as PowerShell writes one
    expect((await postFaults(trip, 'application/json; charset=utf-8')).status).toBe(200);
    expect((await postFaults(`\ufeff${JSON.stringify({ fault: 'clear-all' })}`)).status).toBe(200);
    expect(await activeFaults()).toEqual([]);
  });

  it('says where a body is malformed, which key is poisoned, and how large a body may be', async () => {
    const cases: [string, string, number, RegExp][] = [
      ['cut off', '{"fault":', 400, /^body: Unexpected end of JSON input$/],
      ['NaN', `{"fault":"ahu-slow","ahu":"${modbusUnit}","ms":NaN}`, 400, /^body: Unexpected token 'N'/],
      [
        '__proto__',
        '{"__proto__":{"x":1},"fault":"clear-all"}',
        400,
        /^body: the key "__proto__" is refused$/,
      ],
      [
        'escaped __proto__',
        '{"\\u005f_proto__":{"x":1},"fault":"clear-all"}',
        400,
        /^body: the key "\\u005f_proto__" is refused$/,
      ],
      [
        'constructor',
        '{"constructor":{"prototype":{}},"fault":"clear-all"}',
        400,
        /^body: the key "constructor" is refused$/,
      ],
      [
        '50 MB',
        `{"fault":"clear-all","pad":"${'x'.repeat(50_000_000)}"}`,
        413,
        /^body: at most 1000000 bytes$/,
      ],
    ];
    for (const [what, body, status, detail] of cases) {
      const r = await postFaults(body);
      expect(r.status, what).toBe(status);
      expect(r.body.error, what).toBe('COOLCTL_E_BAD_REQUEST');
      expect(r.body.details[0], what).toMatch(detail);
    }
    // a value of that text is no key
    const asValue = await postFaults(JSON.stringify({ fault: 'ahu-trip', ahu: '__proto__' }));
    expect(asValue.body.details[0]).toMatch(/unknown air handler "__proto__"/);
    expect(await activeFaults()).toEqual([]);
  });

  it('refuses a fault it would apply otherwise than asked, and a batch over the cap, changing nothing', async () => {
    // before: accepted, listed as BadNoSuchThing, and served as BadDeviceFailure
    const unknownStatus = await postFaults(
      JSON.stringify([
        { fault: 'ahu-trip', ahu: modbusUnit },
        { fault: 'ahu-bad-status', ahu: opcuaUnit, status: 'BadNoSuchThing' },
      ]),
    );
    expect(unknownStatus.status).toBe(400);
    expect(unknownStatus.body.error).toBe('COOLCTL_E_FAULT_INVALID');
    expect(unknownStatus.body.details).toEqual([
      expect.stringMatching(
        /^\[1\]\/status: "BadNoSuchThing" is not an OPC-UA Bad status; allowed: .*BadDeviceFailure/,
      ),
    ]);
    const known = await postFaults(
      JSON.stringify({ fault: 'ahu-bad-status', ahu: opcuaUnit, status: 'BadInvalidState' }),
    );
    expect(known.status).toBe(200);

    const tenThousand = JSON.stringify(
      Array.from({ length: 10_000 }, () => ({ fault: 'ahu-trip', ahu: modbusUnit })),
    );
    const over = await postFaults(tenThousand);
    expect(over.status).toBe(400);
    expect(over.body.details).toEqual(['body: got 10000 faults, allowed: at most 1000 per request']);
    expect(await activeFaults()).toEqual([
      { fault: 'ahu-bad-status', ahu: opcuaUnit, status: 'BadInvalidState' },
    ]);
    expect((await postFaults('{"fault":"clear-all"}')).status).toBe(200);
  });

  it('refuses a query parameter a route does not know rather than answering as if it were absent', async () => {
    for (const q of ['sinse=5', 'since[]=5', 'since[a]=5', 'since=0&offset=3']) {
      const res = await fetch(`${base}/sim/journal?${q}`);
      const body = (await res.json()) as Refusal;
      expect(res.status, q).toBe(400);
      expect(body.details[0], q).toMatch(/: not a parameter here; allowed: since, limit$/);
    }
    const influence = await fetch(`${base}/sim/test/influence?at=design&mesure=supply-response`);
    expect(influence.status).toBe(400);
    expect(((await influence.json()) as Refusal).details).toEqual([
      '"mesure": not a parameter here; allowed: at, measure',
    ]);
    // what clients send keeps working
    expect((await fetch(`${base}/sim/journal?since=0&limit=5`)).status).toBe(200);
    expect((await fetch(`${base}/sim/test/influence?at=design&measure=supply-response`)).status).toBe(200);
  });

  it('answers a wrong method on a known path 405 with the methods it takes, and HEAD like GET', async () => {
    const badBefore = await badRequests();
    // before: 404, as if the path did not exist
    const expected: [string, string, string][] = [
      ['PUT', '/sim/state', 'GET, HEAD'],
      ['DELETE', '/sim/faults', 'GET, HEAD, POST'],
      ['PUT', '/sim/faults', 'GET, HEAD, POST'],
      ['POST', '/sim/journal?since=0', 'GET, HEAD'],
      ['PATCH', '/sim/test/influence', 'GET, HEAD'],
      ['OPTIONS', '/sim/state', 'GET, HEAD'],
      ['POST', '/healthz', 'GET, HEAD'],
    ];
    for (const [method, path, allow] of expected) {
      const res = await fetch(`${base}${path}`, { method });
      const body = (await res.json()) as Refusal;
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow'), `${method} ${path}`).toBe(allow);
      expect(body.error, `${method} ${path}`).toBe('COOLCTL_E_BAD_REQUEST');
      expect(body.details[0], `${method} ${path}`).toBe(`method: got ${method}, allowed: ${allow}`);
    }
    expect(await badRequests()).toBe(badBefore + expected.length);
    for (const path of ['/sim/state', '/sim/journal', '/sim/faults', '/sim/test/influence', '/healthz']) {
      const head = await fetch(`${base}${path}`, { method: 'HEAD' });
      expect(head.status, path).toBe(200);
      expect(head.headers.get('content-type'), path).toMatch(/^application\/json/);
    }
    // an unknown path is 404 whatever the method, and says no Allow
    for (const method of ['GET', 'HEAD', 'DELETE', 'POST']) {
      const res = await fetch(`${base}/sim/nope`, { method });
      expect(res.status, method).toBe(404);
      expect(res.headers.get('allow'), method).toBeNull();
    }
  });

  it('does not resolve path tricks sent byte for byte, and never shows a stack', async () => {
    for (const path of [
      '/sim/../sim/state',
      '/sim/%2e%2e/sim/state',
      '/sim/./state',
      '//sim/state',
      '/sim//state',
      '/sim%2fstate',
      '/sim/state/',
      '/sim/state%00',
    ]) {
      const r = await rawGet(path);
      expect(r.status, path).toBe(404);
      expect(JSON.parse(r.body), path).toMatchObject({ error: 'COOLCTL_E_BAD_REQUEST' });
      expect(r.body, path).not.toMatch(/\bat .*\.(ts|js):\d+/);
    }
    const unreadable = await rawGet('/sim/state%');
    expect(unreadable.status).toBe(400);
    expect(unreadable.body).not.toMatch(/\bat .*\.(ts|js):\d+/);
  });

  it('tells a journal reader whose `since` is older than the retained window that entries were lost', async () => {
    const retained = 200_000;
    const first = sim.journal.lastSeq + 1;
    const entry = {
      ahu: modbusUnit,
      protocol: 'modbus-tcp',
      client: 'test',
      epoch: 1,
      values: { fanPct: 50 },
      accepted: true,
      reason: null,
    };
    for (let i = 0; i < retained + 10; i++) sim.journal.record(entry);
    const oldest = sim.journal.lastSeq - retained + 1;
    expect(oldest).toBeGreaterThan(first);

    const lost = (await (await fetch(`${base}/sim/journal?since=0&limit=3`)).json()) as {
      entries: { seq: number }[];
      nextSeq: number;
      truncated: boolean;
    };
    expect(lost.truncated).toBe(true);
    expect(lost.entries.map((e) => e.seq)).toEqual([oldest, oldest + 1, oldest + 2]);
    // paging from the last entry read, as docs/sim-api.md says, reaches the next one
    const next = (await (
      await fetch(`${base}/sim/journal?since=${oldest + 2}&limit=1`)
    ).json()) as typeof lost;
    expect(next).toMatchObject({
      truncated: false,
      entries: [{ seq: oldest + 3 }],
      nextSeq: sim.journal.lastSeq + 1,
    });
  });
});
