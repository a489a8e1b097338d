// Operator overrides a hand-made etcd value carries (etcdctl, a bad restore, a hostile holder of
// etcd credentials): an override outside the device contract, of the wrong shape, or hidden behind a
// unit named "__proto__" is never in force on a running node; the valid ones and the pause are. Each
// such value is reported once: a warn line naming the units and why, and the ignored-keys counter.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { checkOperatorState } from '../../src/cluster/operator-state.ts';
import { waitFor } from '../helpers.ts';
import { makeNode, useEtcdFixture } from './harness.ts';

const fx = useEtcdFixture('operator-overrides-hostile');
let nodes: EtcdLeadership[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

async function ignored(r: Registry, kind: string): Promise<number> {
  const m = await r.getSingleMetric('coolctl_leadership_ignored_keys_total')!.get();
  return m.values.find((v) => v.labels.kind === kind)?.value ?? 0;
}

const HIDDEN = {
  paused: false,
  overrides: {
    'AHU-02': { fanPct: 40 },
    // A valid override on its own, carrying an unchecked one for AHU-01 (as a prototype would).
    ['__proto__']: { fanPct: 50, 'AHU-01': { fanPct: -1000, supplySetpointC: 'hot' } },
    'AHU-03': { fanPct: 500 },
    'AHU-04': 'max',
  },
};

describe('hostile operator overrides', () => {
  it('parsing: no unit finds an override through "__proto__"; each dropped one is named', () => {
    const r = checkOperatorState(JSON.stringify(HIDDEN));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.state.overrides['AHU-01']).toBeUndefined();
    expect(r.state.overrides['AHU-02']).toEqual({ fanPct: 40 });
    expect(Object.getPrototypeOf(r.state.overrides)).toBe(Object.prototype);
    expect(r.dropped).toEqual(['"AHU-03": fanPct must be 0…100', '"AHU-04": an override is an object']);
    const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`U${i}`, { fanPct: 101 }]));
    const m = checkOperatorState(JSON.stringify({ paused: false, overrides: many }));
    expect(m.ok && m.dropped.at(-1)).toBe('and 35 more');
    const notObject = checkOperatorState(JSON.stringify({ paused: true, overrides: [{ fanPct: 1 }] }));
    expect(notObject).toMatchObject({
      ok: true,
      dropped: ['"overrides" is not an object of unit → override'],
    });
  });

  it('on a running node: only the valid overrides are in force, and the value is reported once', async () => {
    const prefix = '/coolctl-test/operator-overrides-hostile';
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    const registry = new Registry();
    const base = { etcd: fx.etcd.clientOptions(), prefix, groups: ['g1'], dataRoot: fx.root.dir };
    const n1 = makeNode('n1', base, { registry, logger });
    nodes = [n1];
    await n1.start();
    await waitFor('n1 leads', () => n1.fence('g1'));

    await fx.etcd.ctl(['put', `${prefix}/operator/g1`, JSON.stringify(HIDDEN)], { asUser: true });
    await waitFor('the value taken in', () => n1.operator('g1').overrides['AHU-02']);
    const inForce = n1.operator('g1');
    expect(inForce.paused).toBe(false);
    expect(inForce.overrides['AHU-01']).toBeUndefined();
    expect(inForce.overrides['AHU-03']).toBeUndefined();
    expect(Object.keys(inForce.overrides).sort()).toEqual(['AHU-02', '__proto__']);
    await waitFor('counted', async () => (await ignored(registry, 'override')) === 1);
    const line = lines.find((l) => l.key === `${prefix}/operator/g1`);
    expect(line).toMatchObject({ kind: 'override' });
    expect(String(line?.why)).toContain('"AHU-03": fanPct must be 0…100');

    // Once per value: the passes since did not count it again; a fixed value is taken as is.
    await n1.updateOperator('g1', (cur) => ({ ...cur, overrides: { 'AHU-02': { fanPct: 45 } } }));
    await waitFor('the fixed value in force', () => n1.operator('g1').overrides['AHU-02']?.fanPct === 45);
    expect(await ignored(registry, 'override')).toBe(1);
    expect(n1.fence('g1')).not.toBeNull();
  });
});
