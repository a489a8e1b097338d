// The simulator's HTTP API on a real loopback socket, as a careless or hostile client meets it:
// malformed and oversized bodies, wrong types, unknown kinds and ids, boundary `since` values, a
// 200 000-deep `fault`, a request that never finishes arriving, more connections than the cap, and
// many requests at once. Each gets a 4xx with a stable code and a bounded body, is counted in
// /sim/state's `api.badRequests` and logged at most once per route and code in a window; valid
// requests keep their documented answers (docs/sim-api.md).
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSimApi } from '../../firmware-sim/api.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const logLines: string[] = [];
const logger = pino({ level: 'info' }, { write: (s: string) => void logLines.push(s) });
const sim = new Simulation({ site, seed: 5, logger: pino({ level: 'silent' }) });
const api = buildSimApi(sim, logger, {
  limits: { requestMs: 500, checkEveryMs: 100, maxConnections: 400 },
});
let base = '';

beforeAll(async () => {
  sim.advance(60, 10);
  await api.listen({ host: '127.0.0.1', port: 0 });
  const addr = api.server.address();
  if (typeof addr !== 'object' || !addr) throw new Error('no address');
  base = `http://127.0.0.1:${addr.port}`;
});
afterAll(async () => {
  await api.close();
});

async function post(body: string, contentType = 'application/json') {
  const res = await fetch(`${base}/sim/faults`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body,
  });
  const text = await res.text();
  return {
    status: res.status,
    text,
    body: JSON.parse(text) as { error: string; message: string; details: string[] },
  };
}

async function badRequests(): Promise<number> {
  const s = (await (await fetch(`${base}/sim/state`)).json()) as { api: { badRequests: number } };
  return s.api.badRequests;
}

describe('simulator API under hostile input', () => {
  it('answers every malformed request with a 4xx, a stable code and a count', async () => {
    const before = await badRequests();
    const cases: [string, string, number, string, RegExp][] = [
      ['not JSON', '{bad', 400, 'COOLCTL_E_BAD_REQUEST', /not valid JSON/],
      ['empty', '', 400, 'COOLCTL_E_BAD_REQUEST', /cannot be empty/],
      ['null', 'null', 400, 'COOLCTL_E_FAULT_INVALID', /missing JSON body/],
      ['a string', '"ahu-trip"', 400, 'COOLCTL_E_FAULT_INVALID', /must be an object/],
      ['empty list', '[]', 400, 'COOLCTL_E_FAULT_INVALID', /empty fault list/],
      ['unknown kind', '{"fault":"meteor"}', 400, 'COOLCTL_E_FAULT_INVALID', /unknown fault "meteor"/],
      [
        'kind of a wrong type',
        '{"fault":42}',
        400,
        'COOLCTL_E_FAULT_INVALID',
        /unknown fault of type number/,
      ],
      [
        'id of a wrong type',
        '{"fault":"ahu-trip","ahu":5}',
        400,
        'COOLCTL_E_FAULT_INVALID',
        /\/ahu: must be string/,
      ],
      [
        'unknown unit',
        '{"fault":"ahu-trip","ahu":"AHU-99"}',
        400,
        'COOLCTL_E_FAULT_INVALID',
        /unknown air handler "AHU-99"/,
      ],
      [
        'unknown rack',
        '{"fault":"heat-load-step","rack":"R-0"}',
        400,
        'COOLCTL_E_FAULT_INVALID',
        /unknown rack "R-0"/,
      ],
      [
        'out of range',
        '{"fault":"packet-loss","pct":1e999}',
        400,
        'COOLCTL_E_FAULT_INVALID',
        /\/pct: must be <= 100/,
      ],
      [
        'extra field',
        '{"fault":"clear-all","x":1}',
        400,
        'COOLCTL_E_FAULT_INVALID',
        /additional properties "x"/,
      ],
      ['prototype key', '{"__proto__":{"a":1},"fault":"clear-all"}', 400, 'COOLCTL_E_BAD_REQUEST', /./],
      [
        'over 1 MB',
        `{"fault":"clear-all","pad":"${'x'.repeat(1_100_000)}"}`,
        413,
        'COOLCTL_E_BAD_REQUEST',
        /too large/,
      ],
      // JSON.stringify of this overflowed the stack: a 500 before
      [
        '200 000-deep kind',
        `{"fault":${'['.repeat(200_000)}${']'.repeat(200_000)}}`,
        400,
        'COOLCTL_E_FAULT_INVALID',
        /unknown fault of type array/,
      ],
    ];
    for (const [what, body, status, code, message] of cases) {
      const r = await post(body);
      expect(r.status, what).toBe(status);
      expect(r.body.error, what).toBe(code);
      expect(r.body.message, what).toMatch(message);
      expect(Array.isArray(r.body.details), what).toBe(true);
    }
    expect(await badRequests()).toBe(before + cases.length);
  });

  it('refuses bad `since` and `limit` values and answers a valid one as documented', async () => {
    for (const q of ['-1', 'NaN', '1e3', '0x10', '%20%201', '99999999999999999999', '', '1&since=2']) {
      const res = await fetch(`${base}/sim/journal?since=${q}`);
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { error: string }).error, q).toBe('COOLCTL_E_BAD_REQUEST');
    }
    for (const q of ['0', '100001', 'x']) {
      const res = await fetch(`${base}/sim/journal?since=0&limit=${q}`);
      expect(res.status, q).toBe(400);
    }
    const far = (await (await fetch(`${base}/sim/journal?since=999999999999999`)).json()) as {
      entries: unknown[];
    };
    expect(far.entries).toEqual([]);
    const all = (await (await fetch(`${base}/sim/journal?since=0`)).json()) as Record<string, unknown>;
    expect(Object.keys(all).sort()).toEqual(['entries', 'nextSeq', 'truncated']);
  });

  it('keeps a refusal bounded however many and however long its problems are, and its log too', async () => {
    const linesBefore = logLines.length;
    // 1 000 faults, each naming a 900-character unit, and 1 000 of an unknown kind: ~1 MB each.
    const longIds = JSON.stringify(
      Array.from({ length: 1000 }, () => ({ fault: 'ahu-trip', ahu: 'X'.repeat(900) })),
    );
    const unknownKinds = JSON.stringify(
      Array.from({ length: 1000 }, (_, i) => ({ fault: `k${i}${'y'.repeat(800)}` })),
    );
    for (const body of [longIds, unknownKinds]) {
      const r = await post(body);
      expect(r.status).toBe(400);
      expect(r.body.error).toBe('COOLCTL_E_FAULT_INVALID');
      // answered in kilobytes, not the 2 MB the problems would make
      expect(r.text.length).toBeLessThan(64 * 1024);
      expect(r.body.details.length).toBeLessThanOrEqual(101);
      expect(r.body.details.at(-1)).toMatch(/… and 900 more problem\(s\)/);
    }
    // a flood of the same refusal: counted each time, logged once in the window
    const before = await badRequests();
    for (let i = 0; i < 30; i++) await post('{"fault":"meteor"}');
    expect(await badRequests()).toBe(before + 30);
    const refusedLines = logLines.slice(linesBefore).filter((l) => l.includes('request refused'));
    expect(refusedLines.length).toBeLessThanOrEqual(3);
    for (const l of logLines.slice(linesBefore)) expect(l.length).toBeLessThan(4096);
  });

  it('answers unknown routes, wrong methods and unreadable URLs in the same shape', async () => {
    const nope = await fetch(`${base}/sim/nope`);
    expect(nope.status).toBe(404);
    expect(await nope.json()).toMatchObject({
      error: 'COOLCTL_E_BAD_REQUEST',
      message: 'no route GET /sim/nope',
    });
    const del = await fetch(`${base}/sim/faults`, { method: 'DELETE' });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET, HEAD, POST');
    expect(await del.json()).toMatchObject({
      error: 'COOLCTL_E_BAD_REQUEST',
      message: 'method DELETE not allowed on /sim/faults: it takes GET, HEAD, POST',
    });
    const bad = await fetch(`${base}/sim/journal%zz`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: 'COOLCTL_E_BAD_REQUEST',
      message: 'the URL cannot be read',
    });
  });

  it('cuts off a request that never finishes arriving, and connections beyond the cap', async () => {
    const before = await badRequests();
    const slow = connect(Number(new URL(base).port), '127.0.0.1');
    let answer = '';
    slow.on('data', (d: Buffer) => {
      answer += d.toString();
    });
    const closed = new Promise<void>((resolve) => slow.once('close', () => resolve()));
    slow.on('error', () => {});
    slow.write(
      'POST /sim/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
    );
    // before: held open for as long as the client liked
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(await badRequests()).toBeGreaterThan(before);

    const held: Socket[] = [];
    try {
      for (let i = 0; i < 450; i++) {
        const s = connect(Number(new URL(base).port), '127.0.0.1');
        s.on('error', () => {});
        held.push(s);
      }
      await waitFor('the server to drop the connections over its cap', () =>
        held.filter((s) => s.destroyed || s.readyState === 'closed').length >= 50 ? true : undefined,
      );
    } finally {
      for (const s of held) s.destroy();
    }
    // and it serves again once they are gone
    await waitFor('the API to answer again', async () =>
      (await fetch(`${base}/sim/state`).catch(() => null))?.status === 200 ? true : undefined,
    );
  });

  it('answers many requests at once, each as it would alone', async () => {
    const rack = site.racks[0]!.id;
    const codes = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const res =
          i % 4 === 0
            ? await fetch(`${base}/sim/state`)
            : i % 4 === 1
              ? await fetch(`${base}/sim/journal?since=${i}`)
              : i % 4 === 2
                ? await fetch(`${base}/sim/faults`, {
                    method: 'POST',
                    headers: { 'content-type': 'application/json' },
                    body: JSON.stringify({ fault: 'heat-load-step', rack, factor: 1.2, clear: i % 8 === 2 }),
                  })
                : await fetch(`${base}/sim/faults`, {
                    method: 'POST',
                    headers: { 'content-type': 'application/json' },
                    body: '{"fault":',
                  });
        await res.arrayBuffer();
        codes.set(res.status, (codes.get(res.status) ?? 0) + 1);
      }),
    );
    expect(Object.fromEntries(codes)).toEqual({ 200: 225, 400: 75 });
    const clear = await post('{"fault":"clear-all"}');
    expect(clear).toMatchObject({ status: 200, body: { applied: 1, faults: [] } });
  });
});
