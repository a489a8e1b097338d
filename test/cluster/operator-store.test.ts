// The operator state fails safe: an invalid stored value keeps the last valid state in force (never
// "not paused" by default), a node that never saw a valid one pauses the group, and each bad value
// is reported once — an error line, a counter — and shown by problem() until it is fixed. Pure: built
// from snapshots parsed out of hand-made key-values, no etcd.
import type { Etcd3, IKeyValue } from 'etcd3';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { OperatorStore } from '../../src/cluster/etcd/operator-store.ts';
import { parseSnapshot } from '../../src/cluster/etcd/snapshot.ts';
import { FAILSAFE_OPERATOR_STATE, NO_OPERATOR_STATE } from '../../src/cluster/operator-state.ts';

const P = '/site';

function kv(key: string, value: string, modRevision: number): IKeyValue {
  return {
    key: Buffer.from(key),
    value: Buffer.from(value),
    create_revision: '1',
    mod_revision: String(modRevision),
    version: '1',
    lease: '0',
  };
}

const snap = (...kvs: IKeyValue[]) => parseSnapshot(kvs, P, ['g1'], 100, 0);

function store() {
  const lines: { level: number; msg: string; group?: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
  const invalid: string[] = [];
  const s = new OperatorStore({
    client: {} as Etcd3,
    prefix: P,
    callTimeoutMs: 500,
    logger,
    onInvalid: (g) => invalid.push(g),
  });
  return { s, lines, invalid };
}

const paused = JSON.stringify({ paused: true, overrides: {}, by: 'ops', atMs: 1, reason: 'maintenance' });

describe('OperatorStore', () => {
  it('keeps the last valid state when the stored value turns invalid, and says so once', () => {
    const { s, lines, invalid } = store();
    expect(s.apply(snap(kv(`${P}/operator/g1`, paused, 5)), ['g1'])).toEqual([]);
    expect(s.state('g1').paused).toBe(true);
    // Garbage over it: still paused (it used to read as "not paused").
    for (let i = 0; i < 3; i++) s.apply(snap(kv(`${P}/operator/g1`, '{"paused":"no"', 6)), ['g1']);
    expect(s.state('g1')).toMatchObject({ paused: true, reason: 'maintenance' });
    expect(s.problem('g1')).toMatchObject({
      problem: 'not JSON',
      key: `${P}/operator/g1`,
      keptLastValid: true,
    });
    expect(invalid).toEqual(['g1']);
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    // Another bad value: reported again, once.
    s.apply(snap(kv(`${P}/operator/g1`, '{"paused":"no"}', 7)), ['g1']);
    s.apply(snap(kv(`${P}/operator/g1`, '{"paused":"no"}', 7)), ['g1']);
    expect(invalid).toEqual(['g1', 'g1']);
    expect(s.problem('g1')?.problem).toMatch(/paused/);
    // Fixed: in force, problem gone; the change is reported.
    const resumed = JSON.stringify({ paused: false, overrides: {}, by: 'ops', atMs: 2, reason: null });
    expect(s.apply(snap(kv(`${P}/operator/g1`, resumed, 8)), ['g1'])).toEqual(['g1']);
    expect(s.state('g1').paused).toBe(false);
    expect(s.problem('g1')).toBeNull();
  });

  it('a node that never saw a valid value pauses the group (units to local control)', () => {
    const { s, lines } = store();
    s.apply(snap(kv(`${P}/operator/g1`, 'garbage', 3)), ['g1']);
    expect(s.state('g1')).toBe(FAILSAFE_OPERATOR_STATE);
    expect(s.state('g1').paused).toBe(true);
    expect(s.problem('g1')).toMatchObject({ keptLastValid: false });
    expect(lines.find((l) => l.level === 50)?.msg).toMatch(/paused until it is fixed/);
  });

  it('no stored value is "none set"; a deleted value is too', () => {
    const { s } = store();
    s.apply(snap(), ['g1']);
    expect(s.state('g1')).toBe(NO_OPERATOR_STATE);
    s.apply(snap(kv(`${P}/operator/g1`, paused, 5)), ['g1']);
    expect(s.apply(snap(), ['g1'])).toEqual(['g1']);
    expect(s.state('g1').paused).toBe(false);
  });

  it('a value too large to read counts as invalid, not as none', () => {
    const { s } = store();
    s.apply(snap(kv(`${P}/operator/g1`, paused, 5)), ['g1']);
    s.apply(parseSnapshot([], P, ['g1'], 101, 0, undefined, [Buffer.from(`${P}/operator/g1`)]), ['g1']);
    expect(s.state('g1').paused).toBe(true);
    expect(s.problem('g1')?.problem).toMatch(/too large/);
  });
});
