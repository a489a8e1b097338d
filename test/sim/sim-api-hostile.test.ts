// The running simulator's HTTP API (started as `npm run sim` starts it, on loopback) against a
// careless client: absurd fault parameters (negative, huge, Infinity, wrong type, a 10 000-character
// id), a batch with one bad fault, a large journal read by a client asking for everything, duplicate
// and needless clears, and 500 idle connections. Each refusal names the field, what it got and what
// is allowed, is counted and logged, changes nothing; the hall keeps running and never shows a
// non-finite number (docs/sim-api.md). What api-hostile*.test.ts cover is not repeated here.
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSimApi, JOURNAL_PAGE_MAX_BYTES } from '../../firmware-sim/api.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const logLines: string[] = [];
const apiLogger = pino({ level: 'info' }, { write: (s: string) => void logLines.push(s) });
const sim = new Simulation({ site, seed: 11, ephemeralPorts: true, logger: quietLogger });
const api = buildSimApi(sim, apiLogger);
const unit = site.airHandlers[0]!.id;
const node = site.sensorNodes[0]!.id;
const rack = site.racks[0]!.id;
let base = '';
let port = 0;

beforeAll(async () => {
  await sim.start();
  await api.listen({ host: '127.0.0.1', port: 0 });
  const addr = api.server.address();
  if (typeof addr !== 'object' || !addr) throw new Error('no address');
  port = addr.port;
  base = `http://127.0.0.1:${port}`;
}, 120_000);
afterAll(async () => {
  await api.close();
  await sim.stop();
});

interface Answer {
  status: number;
  body: { error?: string; message?: string; details?: string[]; applied?: number; faults?: unknown[] };
}

async function postFaults(body: unknown): Promise<Answer> {
  const res = await fetch(`${base}/sim/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Answer['body'] };
}

interface State {
  simTimeS: number;
  ahus: { id: string; mode: string }[];
  faults: unknown[];
  api: { badRequests: number };
}

async function state(): Promise<State> {
  return (await (await fetch(`${base}/sim/state`)).json()) as State;
}

/** Every number in a JSON text, as written: a NaN or Infinity would show as `null` in a number's place. */
function nonFiniteNumbers(s: State): string[] {
  const bad: string[] = [];
  const walk = (v: unknown, path: string): void => {
    if (typeof v === 'number' && !Number.isFinite(v)) bad.push(path);
    else if (v !== null && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
  };
  const { racks, ahus, power } = s as unknown as Record<string, unknown>;
  walk({ racks, ahus, power }, '');
  // a NaN is serialized as null: no rack inlet or AHU temperature may be null
  for (const r of racks as { id: string; inletC: unknown }[])
    if (typeof r.inletC !== 'number') bad.push(`racks.${r.id}.inletC`);
  for (const a of ahus as Record<string, unknown>[])
    for (const k of ['fanPct', 'supplySetpointC', 'supplyC', 'returnC'])
      if (typeof a[k] !== 'number') bad.push(`ahus.${String(a.id)}.${k}`);
  for (const [k, v] of Object.entries(power as Record<string, unknown>))
    if (typeof v !== 'number') bad.push(`power.${k}`);
  return bad;
}

describe('simulator API against a careless client', () => {
  it('refuses every absurd fault parameter naming the field, what it got and the range allowed', async () => {
    const before = await state();
    const linesBefore = logLines.length;
    const cases: [string, string, RegExp][] = [
      [
        'heat-load step of -5',
        `{"fault":"heat-load-step","rack":"*","factor":-5}`,
        /^\/factor: must be >= 0 \(got -5; allowed: a finite number from 0 to 5\)$/,
      ],
      [
        'heat-load step of 1e9',
        `{"fault":"heat-load-step","rack":"${rack}","factor":1e9}`,
        /^\/factor: must be <= 5 \(got 1000000000; allowed: a finite number from 0 to 5\)$/,
      ],
      [
        'heat-load step of Infinity',
        `{"fault":"heat-load-step","rack":"*","factor":1e999}`,
        /^\/factor: must be <= 5 \(got Infinity; allowed: a finite number from 0 to 5\)$/,
      ],
      [
        'packet loss 200 %',
        '{"fault":"packet-loss","pct":200}',
        /^\/pct: must be <= 100 \(got 200; allowed: a finite number from 0 to 100\)$/,
      ],
      [
        'packet loss as text',
        '{"fault":"packet-loss","pct":"2.0"}',
        /^\/pct: must be number \(got "2\.0"; allowed: a finite number from 0 to 100\)$/,
      ],
      // before: accepted by the schema, refused by the mesh after it was listed as active
      [
        'an Infinity raw value',
        `{"fault":"sensor-out-of-range","node":"${node}","value":1e999}`,
        /^\/value: must be a finite number \(got Infinity; allowed: a finite number\)$/,
      ],
      [
        'a fractional delay',
        `{"fault":"ahu-slow","ahu":"${unit}","ms":1.5}`,
        /^\/ms: must be integer \(got 1\.5; allowed: an integer from 1 to 60000\)$/,
      ],
      [
        'noise of sigma 0',
        `{"fault":"sensor-noisy","node":"${node}","sigma":0}`,
        /^\/sigma: must be > 0 \(got 0; allowed: a finite number above 0 up to 100\)$/,
      ],
      // before: "must be equal to constant" once per allowed name, none of them named
      [
        'an unknown profile',
        '{"fault":"load-profile","profile":"weekly"}',
        /^\/profile: must be one of daily, constant \(got "weekly"\)$/,
      ],
      [
        'an unknown point',
        `{"fault":"ahu-sensor-broken","ahu":"${unit}","point":"dewPointC"}`,
        /^\/point: must be one of supplyC, returnC, fanPct, cwValvePct, fanKw, coolingKw \(got "dewPointC"\)$/,
      ],
      [
        'a 10 000-character id',
        `{"fault":"ahu-trip","ahu":"${'A'.repeat(10_000)}"}`,
        /^\/ahu: must NOT have more than 64 characters \(got a string of 10000 characters; allowed: a string of 1 to 64 characters\)$/,
      ],
      [
        'a clear that is not a boolean',
        `{"fault":"ahu-trip","ahu":"${unit}","clear":"yes"}`,
        /^\/clear: must be boolean \(got "yes"; allowed: true or false\)$/,
      ],
      [
        'a field the fault does not take',
        `{"fault":"ahu-trip","ahu":"${unit}","minutes":5}`,
        /^\/: must NOT have additional properties "minutes" \(allowed: fault, ahu, clear\)$/,
      ],
      [
        'an AHU that does not exist',
        '{"fault":"ahu-trip","ahu":"AHU-99"}',
        /^unknown air handler "AHU-99"; known: AHU-01, /,
      ],
      [
        'a rack that does not exist',
        '{"fault":"heat-load-step","rack":"R-99","factor":2}',
        /^unknown rack "R-99"; known: /,
      ],
    ];
    for (const [what, body, detail] of cases) {
      const r = await postFaults(body);
      expect(r.status, what).toBe(400);
      expect(r.body.error, what).toBe('COOLCTL_E_FAULT_INVALID');
      expect(r.body.details, what).toHaveLength(1);
      expect(r.body.details![0], what).toMatch(detail);
      expect(JSON.stringify(r.body).length, what).toBeLessThan(2_000);
    }
    const after = await state();
    expect(after.api.badRequests).toBe(before.api.badRequests + cases.length);
    expect(after.faults).toEqual(before.faults);
    const refused = logLines.slice(linesBefore).filter((l) => l.includes('request refused'));
    expect(refused.some((l) => l.includes('COOLCTL_E_FAULT_INVALID') && l.includes('/sim/faults'))).toBe(
      true,
    );
    // the hall kept running, and shows only finite numbers
    await waitFor('sim time to advance', async () =>
      (await state()).simTimeS > after.simTimeS ? true : undefined,
    );
    expect(nonFiniteNumbers(await state())).toEqual([]);
  });

  it('applies nothing of a batch with one bad fault, and never lists a fault it refused', async () => {
    const before = await state();
    const batch = await postFaults([
      { fault: 'ahu-trip', ahu: unit },
      { fault: 'sensor-out-of-range', node, value: 1e308 },
    ]);
    expect(batch.status).toBe(200);
    expect(await postFaults({ fault: 'clear-all' })).toMatchObject({ status: 200, body: { faults: [] } });
    // Infinity written the only way JSON can (1e999): before, the trip was applied and the
    // refused fault listed as active with `"value": null`
    const bad = await postFaults(
      `[{"fault":"ahu-trip","ahu":"${unit}"},{"fault":"sensor-out-of-range","node":"${node}","value":-1e999}]`,
    );
    expect(bad.status).toBe(400);
    expect(bad.body.details).toEqual([
      '[1]/value: must be a finite number (got -Infinity; allowed: a finite number)',
    ]);
    const after = await state();
    expect(after.faults).toEqual([]);
    expect(after.ahus.find((a) => a.id === unit)!.mode).toBe(before.ahus.find((a) => a.id === unit)!.mode);
    expect(after.ahus.find((a) => a.id === unit)!.mode).not.toBe('tripped');
  });

  it('takes duplicate injections and needless clears without piling up faults', async () => {
    const trip = { fault: 'ahu-trip', ahu: unit };
    expect(await postFaults([trip, trip, trip])).toMatchObject({
      status: 200,
      body: { applied: 3, faults: [trip] },
    });
    expect(await postFaults(trip)).toMatchObject({ status: 200, body: { faults: [trip] } });
    const step = { fault: 'heat-load-step', rack, clear: true };
    expect(await postFaults(step)).toMatchObject({ status: 200, body: { faults: [trip] } });
    expect(await postFaults({ fault: 'clear-all' })).toMatchObject({ status: 200, body: { faults: [] } });
    expect(await postFaults({ fault: 'clear-all' })).toMatchObject({ status: 200, body: { faults: [] } });
    await waitFor('the unit to run again', async () =>
      (await state()).ahus.find((a) => a.id === unit)!.mode !== 'tripped' ? true : undefined,
    );
  });

  it('answers a journal read asking for 100 000 entries in pages of at most 1 MiB that still reach every entry', async () => {
    // a busy hall's journal: 30 000 writes are ~7 MB of JSON
    for (let i = 0; i < 30_000; i++) {
      sim.journal.record({
        ahu: unit,
        protocol: 'modbus-tcp',
        client: 'modbus:127.0.0.1:53422',
        epoch: 5,
        values: { heartbeat: i % 65_536, remoteEnable: true, fanPct: 60, supplySetpointC: 20 },
        accepted: true,
        reason: null,
      });
    }
    const lastSeq = sim.journal.lastSeq;
    const first = sim.journal.firstSeq;
    // before: all of it in one answer (a full journal: 24 MB, half a second of a stalled simulator)
    const res = await fetch(`${base}/sim/journal?since=${first - 1}&limit=100000`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(JOURNAL_PAGE_MAX_BYTES + 100);
    // a reader paging on the last seq it got reads every entry, in order, none twice
    let cursor = first - 1;
    let read = 0;
    let outOfOrder = 0;
    for (let page = 0; page < 100 && cursor < lastSeq; page++) {
      const body = (await (await fetch(`${base}/sim/journal?since=${cursor}&limit=100000`)).json()) as {
        entries: { seq: number }[];
        nextSeq: number;
        truncated: boolean;
      };
      expect(body.truncated).toBe(false);
      expect(body.entries.length).toBeGreaterThan(0);
      for (const e of body.entries) if (e.seq !== ++cursor) outOfOrder++;
      read += body.entries.length;
    }
    expect(outOfOrder).toBe(0);
    expect(cursor).toBeGreaterThanOrEqual(lastSeq);
    expect(read).toBeGreaterThanOrEqual(lastSeq - first + 1);
  });

  it('keeps answering state, HEAD and concurrent reads beside 500 idle connections', async () => {
    const idle: Socket[] = [];
    try {
      for (let i = 0; i < 500; i++) {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => {});
        idle.push(s);
      }
      await waitFor('the idle connections to open', () =>
        idle.every((s) => s.readyState === 'open') ? true : undefined,
      );
      const statuses = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const r = await fetch(`${base}/sim/state`, { signal: AbortSignal.timeout(5_000) });
          return (await r.json()) && r.status;
        }),
      );
      expect(statuses).toEqual(Array(10).fill(200));
      const head = await fetch(`${base}/sim/state`, { method: 'HEAD', signal: AbortSignal.timeout(5_000) });
      expect(head.status).toBe(200);
      expect(await head.text()).toBe('');
    } finally {
      for (const s of idle) s.destroy();
    }
  });
});
