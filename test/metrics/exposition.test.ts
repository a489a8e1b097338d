// /metrics' renderer against prom-client's own: prom-client's families written as bytes
// (writeFamily) are the text registry.metrics() gives, escaping, shared labels and odd values
// included; a family of a thousand lines is written over several event-loop turns, not in one; the
// line starts the per-device and process-value families keep between scrapes follow devices added
// and a site reloaded; `promtool check metrics` takes the text. A gzip scraper's render goes through
// zlib a chunk at a time and keeps only the compressed bytes; scrapes of either encoding share a
// render; a failed compression is answered with the text, a failed render rejects.
import { Transform } from 'node:stream';
import { createGzip, gunzipSync, constants as zlibConstants } from 'node:zlib';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { acceptsGzip } from '../../src/api/metrics-text.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import { ProcessValues } from '../../src/daemon/process-values.ts';
import type { AhuReadings, DeviceIo } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { GZIP_CHUNK_BYTES, MetricsExposition } from '../../src/metrics/exposition.ts';
import { escapeLabelValue, TextWriter } from '../../src/metrics/text.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { FakeCluster } from '../support/fake-cluster.ts';
import { promtoolCheck } from '../support/promtool.ts';
import { reportNodes } from '../support/sensor-reports.ts';

async function render(registry: Registry, opts: { sliceMs?: number } = {}): Promise<string> {
  return (await new MetricsExposition(registry, { reuseMs: 0, ...opts }).body()).toString('utf8');
}

/** Event-loop turns (setImmediate callbacks) that ran while `work` did. */
async function turnsDuring(work: () => Promise<unknown>): Promise<number> {
  let turns = 0;
  let on = true;
  const tick = () => {
    turns++;
    if (on) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    await work();
  } finally {
    on = false;
  }
  return turns;
}

describe('/metrics renders prom-client families as prom-client does', () => {
  it('the same text as registry.metrics(): labels escaped, shared labels, odd values', async () => {
    const registry = new Registry();
    const c = new Counter({
      name: 'coolctl_test_requests_total',
      help: 'Requests\\ with "quotes",\na newline and °C',
      labelNames: ['route', 'code'],
      registers: [registry],
    });
    c.inc({ route: 'a\\b"c"\nd', code: '200' }, 3);
    c.inc({ route: 'Kühlung °C', code: '500' }, 0.1 + 0.2);
    c.inc({ route: '', code: '404' });
    const g = new Gauge({ name: 'coolctl_test_level', help: 'A level', registers: [registry] });
    g.set(-0.000123);
    const odd = new Gauge({
      name: 'coolctl_test_odd',
      help: 'NaN, infinities, big and tiny numbers',
      labelNames: ['k'],
      registers: [registry],
    });
    odd.set({ k: 'nan' }, Number.NaN);
    odd.set({ k: 'inf' }, Number.POSITIVE_INFINITY);
    odd.set({ k: 'minf' }, Number.NEGATIVE_INFINITY);
    odd.set({ k: 'big' }, 1.5e300);
    odd.set({ k: 'tiny' }, 5e-324);
    odd.set({ k: 'int' }, 2 ** 53 + 2);
    new Gauge({
      name: 'coolctl_test_empty',
      help: 'No values yet',
      labelNames: ['x'],
      registers: [registry],
    });
    const h = new Histogram({
      name: 'coolctl_test_seconds',
      help: 'A histogram with labels',
      labelNames: ['group'],
      buckets: [0.00005, 0.001, 0.25, 1],
      registers: [registry],
    });
    h.observe({ group: 'G-01' }, 0.0002);
    h.observe({ group: 'G-"2"' }, 3);
    const bare = new Histogram({
      name: 'coolctl_test_bare_seconds',
      help: 'A histogram without labels',
      buckets: [0.1],
      registers: [registry],
    });
    bare.observe(0.05);

    const text = await render(registry);
    expect(text).toBe(await registry.metrics());
    expect(text).toContain('route="a\\\\b\\"c\\"\\nd"');
    expect(await promtoolCheck(text)).toEqual({ code: 0, out: '' });
  });

  it('writes a family of a thousand lines over several event-loop turns', async () => {
    const registry = new Registry();
    const h = new Histogram({
      name: 'coolctl_test_decision_seconds',
      help: 'One histogram per group, as the control loops keep them',
      labelNames: ['group'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers: [registry],
    });
    for (let i = 0; i < 100; i++) h.observe({ group: `G-${i}` }, i / 1e5);
    let text = '';
    // sliceMs 0: the renderer yields at every step it offers; a family rendered in one piece offers one.
    const turns = await turnsDuring(async () => {
      text = await render(registry, { sliceMs: 0 });
    });
    expect(text).toBe(await registry.metrics());
    expect(text.split('\n').length).toBeGreaterThan(1200);
    expect(turns).toBeGreaterThanOrEqual(4);
  });

  it('TextWriter.labelValue escapes as prom-client does', () => {
    for (const v of ['plain', 'a\\b', 'q"q', 'line\nbreak', 'Kühlung "°C"\\\n', '', 'tab\there']) {
      const w = new TextWriter(16);
      w.labelValue(v);
      expect(w.bytes().toString('utf8')).toBe(escapeLabelValue(v));
    }
  });
});

describe('renders shared by the scrapes that come together', () => {
  it('scrapes within reuseMs share a render; a later one renders afresh', async () => {
    const registry = new Registry();
    const g = new Gauge({ name: 'coolctl_test_n', help: 'a number', registers: [registry] });
    let nowMs = 0;
    const e = new MetricsExposition(registry, { reuseMs: 500, now: () => nowMs });
    g.set(1);
    const [a, b] = await Promise.all([e.answer(), e.answer()]);
    expect(b.body).toBe(a.body);
    nowMs = 100;
    g.set(2);
    const c = await e.answer(); // still offered: the same render
    expect(c.body).toBe(a.body);
    expect(c.ageMs).toBe(100);
    nowMs = 600;
    const d = await e.answer(); // a new render; the old one is no longer offered
    expect(d.body.toString()).toContain('coolctl_test_n 2\n');
    expect(a.body.toString()).toContain('coolctl_test_n 1\n'); // an answer's bytes are its own
    expect(e.renders).toBe(2);
  });
});

/** A registry of `series` gauge lines, a few families with multi-byte HELP text among them. */
function bigRegistry(series: number): { registry: Registry; g: Gauge } {
  const registry = new Registry();
  const g = new Gauge({
    name: 'coolctl_test_unit_supply_celsius',
    help: 'Zuluft °C — Kühlung',
    labelNames: ['unit', 'group'],
    registers: [registry],
  });
  for (let i = 0; i < series; i++) g.set({ unit: `AHU-${i}`, group: `G-${i % 100}` }, 17 + (i % 50) / 8);
  // HELP texts of two- and three-byte characters, one longer than a chunk, many of them between
  // short families: chunk boundaries fall next to and around them.
  for (let f = 0; f < 60; f++) {
    const help = f === 30 ? 'Kühlwasser °C → '.repeat(9000) : `Lüfter ${f} — ${'€°ü'.repeat(f * 37)}`;
    new Gauge({ name: `coolctl_test_help_${f}`, help, registers: [registry] }).set(f);
  }
  return { registry, g };
}

/** zlib's gzip, recording the chunks written into it, and every stream made. */
function recordingGzip() {
  const chunks: Buffer[] = [];
  const streams: Transform[] = [];
  return {
    chunks,
    streams,
    make: (): Transform => {
      const z = createGzip({ level: zlibConstants.Z_BEST_SPEED });
      const write = z.write.bind(z) as (c: Buffer, cb: (err?: Error | null) => void) => boolean;
      z.write = ((c: Buffer, cb: (err?: Error | null) => void) => {
        chunks.push(Buffer.from(c));
        return write(c, cb);
      }) as typeof z.write;
      streams.push(z);
      return z;
    },
  };
}

/** A stream that fails as zlib can mid-stream (e.g. out of memory) once it was given `afterBytes`. */
function failingGzip(afterBytes: number) {
  const streams: Transform[] = [];
  return {
    streams,
    make: (): Transform => {
      let seen = 0;
      const z = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          seen += chunk.length;
          if (seen > afterBytes) cb(new Error('zlib: insufficient memory'));
          else cb();
        },
      });
      streams.push(z);
      return z;
    },
  };
}

describe('gzip for scrapers that accept it', () => {
  it('a gzip render goes through zlib a chunk at a time and decodes to exactly registry.metrics()', async () => {
    const { registry } = bigRegistry(8000);
    const zlib = recordingGzip();
    const e = new MetricsExposition(registry, { reuseMs: 0, gzipStream: zlib.make });
    const z = await e.answer({ gzip: true });
    expect(z.encoding).toBe('gzip');
    const text = await registry.metrics();
    expect(Buffer.byteLength(text)).toBeGreaterThan(4 * GZIP_CHUNK_BYTES);
    expect(gunzipSync(z.body).toString('utf8')).toBe(text);
    // Several chunks, none bigger than one but the one HELP line that is (its own buffer).
    expect(zlib.chunks.length).toBeGreaterThan(4);
    expect(zlib.chunks.filter((c) => c.length > GZIP_CHUNK_BYTES)).toHaveLength(1);
    expect(Buffer.concat(zlib.chunks).toString('utf8')).toBe(text);
    // Chunks end next to multi-byte HELP text, and never inside a character.
    expect(
      zlib.chunks.slice(1).some((c) => c.toString('latin1').startsWith('# HELP coolctl_test_help_')),
    ).toBe(true);
    const utf8 = new TextDecoder('utf-8', { fatal: true });
    for (const c of zlib.chunks) expect(() => utf8.decode(c)).not.toThrow();
    expect(zlib.streams.every((s) => s.destroyed)).toBe(true);
    expect(e.compressions).toBe(1);
    expect(e.compressionFailures).toBe(0);
    // body() of the same render is its text, gunzipped.
    expect((await new MetricsExposition(registry, { reuseMs: 500 }).body()).toString('utf8')).toBe(text);
  });

  it('concurrent gzip and plain scrapes share one render, whichever comes first', async () => {
    const { registry } = bigRegistry(2000);
    const text = await registry.metrics();
    for (const order of [['gzip', 'plain', 'gzip'] as const, ['plain', 'gzip', 'plain'] as const]) {
      const e = new MetricsExposition(registry, { reuseMs: 500 });
      const answers = await Promise.all(order.map((k) => e.answer({ gzip: k === 'gzip' })));
      expect(e.renders).toBe(1);
      expect(e.compressions).toBe(1);
      for (const [i, a] of answers.entries()) {
        expect(a.encoding).toBe(order[i] === 'gzip' ? 'gzip' : 'identity');
        expect((a.encoding === 'gzip' ? gunzipSync(a.body) : a.body).toString('utf8')).toBe(text);
      }
      expect(answers[2]!.body).toBe(answers[0]!.body);
      // A scrape of either kind within reuseMs is answered from the same render.
      expect(await e.body()).toBe(order[0] === 'plain' ? answers[0]!.body : answers[1]!.body);
      expect(e.renders).toBe(1);
    }
  });

  it('a compression that fails mid-render is counted and answered with the whole text; no stream is left', async () => {
    const { registry } = bigRegistry(4000);
    const text = await registry.metrics();
    const zlib = failingGzip(3 * GZIP_CHUNK_BYTES);
    const e = new MetricsExposition(registry, { reuseMs: 500, gzipStream: zlib.make });
    const [a, b] = await Promise.all([e.answer({ gzip: true }), e.answer({ gzip: true })]);
    for (const x of [a, b]) {
      expect(x.encoding).toBe('identity');
      expect(x.body.toString('utf8')).toBe(text);
    }
    expect(e.renders).toBe(1);
    expect(e.compressions).toBe(1);
    expect(e.compressionFailures).toBe(1);
    expect(zlib.streams.length).toBe(1);
    expect(zlib.streams[0]!.destroyed).toBe(true);
    // A plain render a gzip scrape shares: its compression fails too, and the scrape gets the text.
    const e2 = new MetricsExposition(registry, { reuseMs: 500, gzipStream: zlib.make });
    const [plain, z] = await Promise.all([e2.answer(), e2.answer({ gzip: true })]);
    expect(z.encoding).toBe('identity');
    expect(z.body).toBe(plain.body);
    expect(e2.compressionFailures).toBe(1);
    expect(zlib.streams.every((s) => s.destroyed)).toBe(true);
    // A factory that throws is a failed compression as well.
    const e3 = new MetricsExposition(registry, {
      reuseMs: 0,
      gzipStream: () => {
        throw new Error('no memory for zlib');
      },
    });
    const c = await e3.answer({ gzip: true });
    expect(c.encoding).toBe('identity');
    expect(c.body.toString('utf8')).toBe(text);
    expect(e3.compressionFailures).toBe(1);
  });

  it('a render that throws rejects its gzip scrapes and leaves no stream', async () => {
    const registry = new Registry();
    const g = new Gauge({
      name: 'coolctl_test_lines',
      help: 'many',
      labelNames: ['i'],
      registers: [registry],
    });
    for (let i = 0; i < 10_000; i++) g.set({ i: `${i}` }, i);
    new Gauge({
      name: 'coolctl_test_broken',
      help: 'throws when collected',
      registers: [registry],
      collect() {
        throw new Error('sensor view gone');
      },
    });
    const zlib = recordingGzip();
    const e = new MetricsExposition(registry, { reuseMs: 0, gzipStream: zlib.make });
    await expect(e.answer({ gzip: true })).rejects.toThrow('sensor view gone');
    expect(e.compressionFailures).toBe(0);
    expect(zlib.chunks.length).toBeGreaterThan(0); // it had begun writing
    expect(zlib.streams.every((s) => s.destroyed)).toBe(true);
  });

  it('a kept gzip render holds its compressed bytes only, not the text', async () => {
    const { registry } = bigRegistry(30_000);
    const e = new MetricsExposition(registry, { reuseMs: 1000 });
    const z = await e.answer({ gzip: true });
    const textBytes = gunzipSync(z.body).length;
    expect(textBytes).toBeGreaterThan(2_000_000);
    // Offered to the scrapes of the next second: what it keeps is the answer's gzip, not a buffer
    // of the text's size (the render's chunks are gone with it).
    expect(e.heldBytes()).toBeGreaterThanOrEqual(z.body.length);
    expect(e.heldBytes()).toBeLessThan(GZIP_CHUNK_BYTES + z.body.length);
    expect(z.body.length).toBeLessThan(textBytes / 5);
    // And nothing once it is no longer offered.
    await waitFor('the render dropped', () => e.heldBytes() === 0);
  });

  it('a render made ahead for a gzip scraper is compressed before the scrape comes', async () => {
    const registry = new Registry();
    new Gauge({ name: 'coolctl_test_n', help: 'a number', registers: [registry] }).set(5);
    const clock = { ms: 0 };
    const t = handTimers();
    const e = new MetricsExposition(registry, { now: () => clock.ms, timers: t.timers });
    for (const at of [0, 1000, 2000, 3000]) {
      clock.ms = at;
      await e.answer({ gzip: true });
    }
    expect(e.compressions).toBe(4);
    const [plan] = t.pending();
    clock.ms = 3500;
    t.fire(plan!);
    await e.idle();
    // Rendered through gzip before any scrape asked for it.
    expect(e.compressions).toBe(5);
    clock.ms = 4000;
    const l = await e.answer({ gzip: true });
    expect(l.encoding).toBe('gzip');
    expect(e.compressions).toBe(5); // the scrape took that render, it started none
    expect(e.aheadServed).toBe(1);
    expect(l.ageMs).toBe(500);
    expect(gunzipSync(l.body).toString()).toContain('coolctl_test_n 5\n');
  });

  it('reads Accept-Encoding as RFC 9110 says: gzip or *, with a q-value above 0', () => {
    for (const yes of [
      'gzip',
      'GZIP',
      'identity, gzip',
      'x-gzip',
      'br;q=1.0, gzip;q=0.5',
      '*',
      'gzip;q=0.001',
      ['deflate', 'gzip'],
    ])
      expect(acceptsGzip(yes), String(yes)).toBe(true);
    for (const no of [
      undefined,
      '',
      'identity',
      'deflate, br',
      'gzip;q=0',
      'gzip; q=0.0',
      '*;q=0',
      '*, gzip;q=0',
      'gzipx',
      'gzip;q=abc',
      'gzip;q=2',
      `${'x,'.repeat(600)}gzip`,
    ])
      expect(acceptsGzip(no), String(no)).toBe(false);
  });
});

/** Timers a test fires by hand: the plans the exposition makes, and what it cancelled. */
function handTimers() {
  const plans: { fn: () => void; ms: number; cleared: boolean }[] = [];
  return {
    plans,
    timers: {
      set: (fn: () => void, ms: number) => {
        const p = { fn, ms, cleared: false };
        plans.push(p);
        return p;
      },
      clear: (h: unknown) => {
        (h as { cleared: boolean }).cleared = true;
      },
    },
    /** The one plan still pending, if any. */
    pending: () => plans.filter((p) => !p.cleared && !(p as { fired?: boolean }).fired),
    fire: (p: { fn: () => void }) => {
      (p as { fired?: boolean }).fired = true;
      p.fn();
    },
  };
}

describe('a steady scraper finds its answer rendered', () => {
  /** An exposition of one gauge, on a hand-moved clock and hand-fired timers. */
  function steady(opts: { reuseMs?: number; aheadMaxAgeMs?: number } = {}) {
    const registry = new Registry();
    const g = new Gauge({ name: 'coolctl_test_n', help: 'a number', registers: [registry] });
    const clock = { ms: 0 };
    const t = handTimers();
    const e = new MetricsExposition(registry, { now: () => clock.ms, timers: t.timers, ...opts });
    return { g, clock, t, e };
  }

  async function scrapeAt(e: MetricsExposition, clock: { ms: number }, atMs: number) {
    clock.ms = atMs;
    return e.answer();
  }

  it('renders ahead of the due scrape once the cadence is steady; the answer is at most one period old', async () => {
    const { g, clock, t, e } = steady();
    for (const at of [0, 1000, 2000]) await scrapeAt(e, clock, at);
    expect(t.pending()).toHaveLength(0); // two intervals are not yet a cadence
    await scrapeAt(e, clock, 3000);
    const [plan] = t.pending();
    expect(plan).toBeDefined();
    // Due at 4000, started half a second before (at most half the interval, half the max age).
    expect(plan!.ms).toBe(500);
    g.set(7);
    clock.ms = 3000 + plan!.ms;
    t.fire(plan!);
    expect(e.rendersAhead).toBe(1);
    g.set(8); // after the ahead render began: the scrape at 4000 gets what was rendered
    const l = await scrapeAt(e, clock, 4000);
    expect(l.body.toString()).toContain('coolctl_test_n 7\n');
    expect(l.ageMs).toBe(1000 - plan!.ms);
    expect(e.aheadServed).toBe(1);
    expect(e.renders).toBe(5); // four on demand, one ahead: no scrape rendered twice
    // And the next one is planned from this scrape.
    expect(t.pending()).toHaveLength(1);
  });

  it('never serves a render older than aheadMaxAgeMs: a late scrape renders afresh', async () => {
    const { g, clock, t, e } = steady({ aheadMaxAgeMs: 1000 });
    for (const at of [0, 2000, 4000, 6000]) await scrapeAt(e, clock, at);
    const [plan] = t.pending();
    clock.ms = 6000 + plan!.ms;
    g.set(1);
    t.fire(plan!);
    await e.idle();
    expect(e.rendersAhead).toBe(1);
    g.set(2);
    // The scraper is late by more than a period: the render made for it is too old to serve.
    const late = await scrapeAt(e, clock, 6000 + plan!.ms + 1000);
    expect(late.body.toString()).toContain('coolctl_test_n 2\n');
    expect(late.ageMs).toBe(0);
    expect(e.aheadServed).toBe(0);
  });

  it('an irregular scraper, or one that stopped, gets no render ahead', async () => {
    const { clock, t, e } = steady();
    for (const at of [0, 1000, 4000, 5500, 6500]) await scrapeAt(e, clock, at);
    expect(t.plans).toHaveLength(0);
    // Steady now: one plan; the scraper then stops, and after that one render nothing more is planned.
    for (const at of [7500, 8500]) await scrapeAt(e, clock, at);
    expect(t.pending()).toHaveLength(1);
    clock.ms = 9000;
    t.fire(t.pending()[0]!);
    await e.idle();
    expect(e.rendersAhead).toBe(1);
    expect(t.pending()).toHaveLength(0);
    // A scrape earlier than planned cancels the plan and renders for itself.
    for (const at of [20_000, 22_000, 24_000, 26_000]) await scrapeAt(e, clock, at);
    const plan = t.pending()[0]!;
    expect(26_000 + plan.ms).toBe(27_500);
    await scrapeAt(e, clock, 27_000);
    expect(plan.cleared).toBe(true);
    expect(e.rendersAhead).toBe(1);
  });

  it("the second of an HA pair shares the first one's render and does not move the plan", async () => {
    const { clock, t, e } = steady({ reuseMs: 500 });
    for (const at of [0, 1000, 2000, 3000]) {
      const a = await scrapeAt(e, clock, at);
      const b = await scrapeAt(e, clock, at + 200);
      expect(b.body).toBe(a.body);
    }
    const plan = t.pending()[0]!;
    expect(plan.cleared).toBe(false);
    expect(3000 + plan.ms).toBe(3500);
  });
});

describe('line starts kept between scrapes', () => {
  it('per-device families: devices added after a scrape get their own lines', async () => {
    const registry = new Registry();
    const m = new DeviceMetrics(registry);
    m.observe('AHU-1', 'modbus-tcp', 'read', 0.003);
    m.meter('AHU-1', 'modbus-tcp').link('up');
    expect(await render(registry)).toBe(await registry.metrics());
    m.observe('AHU-2', 'opcua', 'write', 0.02, 'COOLCTL_E_DEVICE_TIMEOUT');
    m.meter('AHU-2', 'opcua').link('degraded');
    m.observe('AHU-1', 'modbus-tcp', 'verify', 0.004);
    const text = await render(registry);
    expect(text).toBe(await registry.metrics());
    expect(text).toContain('coolctl_device_link_state{device="AHU-2",protocol="opcua",state="degraded"} 1');
    expect(text).toContain(
      'coolctl_device_transactions_total{device="AHU-2",protocol="opcua",op="write",outcome="error"} 1',
    );
  });

  it('process values: a reloaded site brings its own label sets', async () => {
    const first = generateSite({ ...demoShape, opcuaShare: 0, modbusBasePort: 0 });
    // The same hall with its units and groups renamed, as a reload could bring.
    const second: Site = structuredClone(first);
    const rename = new Map(second.airHandlers.map((a, i) => [a.id, `U${i}-new`]));
    for (const a of second.airHandlers) a.id = rename.get(a.id)!;
    for (const g of second.controlGroups) {
      g.airHandlers = g.airHandlers.map((id) => rename.get(id)!);
      g.id = `${g.id}-new`;
    }
    let site = first;
    const reading: AhuReadings = {
      mode: 'remote',
      fanPct: 55.5,
      supplySetpointC: 18,
      supplyC: 17.25,
      returnC: 29.1,
      cwValvePct: 40,
      alarms: 1,
      epoch: 5,
      heartbeat: 1,
      fanKw: 2.5,
      coolingKw: 40.125,
      quality: 'good',
      sourceTimeMs: 0,
    };
    const unit = (id: string): DeviceIo =>
      ({
        id,
        protocol: 'modbus-tcp',
        linkState: 'up',
        remoteControlLost: false,
        on() {},
        off() {},
        once() {},
        open: async () => {},
        read: async () => ({ ...reading, sourceTimeMs: Date.now() }),
        writeCommand: async () => {},
        close: async () => {},
      }) as unknown as DeviceIo;
    const hall = (s: Site) => {
      const cluster = new FakeCluster(
        Object.fromEntries(s.controlGroups.map((g, i) => [g.id, ['n1', 3 + i]])),
      );
      const leadership = cluster.node('n1');
      const devices = new Map(s.airHandlers.map((a) => [a.id, unit(a.id)]));
      const drivers = new Map(
        s.controlGroups.map((g) => [
          g.id,
          new GroupDriver(g, devices, leadership, { periodMs: 50, logger: quietLogger }),
        ]),
      );
      const store = new SensorStore(s);
      reportNodes(
        store,
        s,
        s.sensorNodes.map((n) => n.id),
        (_n, x, i) => (x.kind === 'humidity' ? 40 : x.kind === 'subfloor-pressure' ? 20 : 21 + i / 8),
      );
      return { leadership, devices, drivers, store };
    };
    const halls = new Map([
      [first, hall(first)],
      [second, hall(second)],
    ]);
    const now = { ms: 0 };
    const registry = new Registry();
    const current = () => halls.get(site)!;
    // One ProcessValues across the reload, reading whichever hall is running.
    new ProcessValues(registry, {
      node: 'n1',
      site: () => site,
      leadership: () => current().leadership,
      drivers: new Proxy(new Map(), {
        get: (_t, k) => {
          const m = current().drivers as unknown as Record<string | symbol, unknown>;
          const v = m[k];
          return typeof v === 'function' ? v.bind(current().drivers) : v;
        },
      }),
      devices: new Proxy(new Map(), {
        get: (_t, k) => {
          const m = current().devices as unknown as Record<string | symbol, unknown>;
          const v = m[k];
          return typeof v === 'function' ? v.bind(current().devices) : v;
        },
      }),
      sensors: new Proxy({} as SensorStore, {
        get: (_t, k) => {
          const v = (current().store as unknown as Record<string | symbol, unknown>)[k];
          return typeof v === 'function' ? v.bind(current().store) : v;
        },
      }),
      now: () => now.ms,
    });
    const stops: (() => void)[] = [];
    try {
      for (const s of [first, second]) {
        const h = halls.get(s)!;
        for (const d of h.drivers.values()) d.start();
        stops.push(() => {
          for (const d of h.drivers.values()) d.stop();
        });
        await waitFor('every unit read', () =>
          s.controlGroups.every((g) =>
            g.airHandlers.every((a) => h.drivers.get(g.id)!.lastReading(a) !== null),
          ),
        );
      }
      const before = await render(registry);
      expect(before).toBe(await registry.metrics());
      expect(before).toContain(`unit="${first.airHandlers[0]!.id}"`);
      site = second;
      now.ms += 1000; // past the snapshot's lifetime
      const after = await render(registry);
      expect(after).toBe(await registry.metrics());
      expect(after).toContain(
        `coolctl_unit_supply_celsius{unit="U0-new",group="${second.controlGroups[0]!.id}"} 17.25`,
      );
      expect(after).not.toContain(`unit="${first.airHandlers[0]!.id}"`);
      expect(await promtoolCheck(after)).toEqual({ code: 0, out: '' });
    } finally {
      for (const s of stops) s();
    }
  });
});
