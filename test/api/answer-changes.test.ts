// What changed between takes of an answer (src/api/answer-changes.ts), pure: entries that come and
// go (alarms) are told by id while remembered, and a take begun before an action expired it is not
// what that action's reader gets.
import { describe, expect, it } from 'vitest';
import { AnswerChanges } from '../../src/api/answer-changes.ts';

type Figures = { items: Record<string, number> };
const changes = (rememberGoneMax?: number) =>
  new AnswerChanges<Figures, 'items'>({
    sections: ['items'],
    signature: (_s, v) => String(v),
    maxAgeMs: 0,
    ...(rememberGoneMax === undefined ? {} : { comeAndGo: { rememberGoneMax } }),
  });
const take = (c: AnswerChanges<Figures, 'items'>, items: Record<string, number>) =>
  c.current(async () => ({ items }));

describe('AnswerChanges', () => {
  it('tells entries that came and went by id, and reads whole a reader older than a forgotten one', async () => {
    const c = changes(2);
    const t1 = await take(c, { a: 1, b: 1 });
    const r1 = c.revision(t1);
    const t2 = await take(c, { a: 2, c: 1 });
    expect(c.changedSince(t2, r1)).toEqual({ items: { a: 2, c: 1 } });
    expect(c.goneSince(t2, r1, 'items')).toEqual(['b']);
    const r2 = c.revision(t2);
    const t3 = await take(c, { c: 1, d: 1, e: 1 });
    expect(c.changedSince(t3, r2)).toEqual({ items: { d: 1, e: 1 } });
    expect(c.goneSince(t3, r2, 'items')).toEqual(['a']);
    // Four gone, two remembered: a reader that has not seen b and a go is read whole.
    const r3 = c.revision(t3);
    const t4 = await take(c, { e: 1 });
    expect(c.goneSince(t4, r3, 'items')).toEqual(['c', 'd']);
    expect(c.changedSince(t4, r3)).toEqual({ items: {} });
    expect(c.changedSince(t4, r2)).toBeNull();
    expect(c.changedSince(t4, r1)).toBeNull();
  });

  it('without comeAndGo, a changed set of entries reads every older reader whole', async () => {
    const c = changes();
    const r1 = c.revision(await take(c, { a: 1 }));
    const t2 = await take(c, { a: 1, b: 1 });
    expect(c.changedSince(t2, r1)).toBeNull();
  });

  it('after expire(), the readers of a take begun before it get one begun after', async () => {
    const c = new AnswerChanges<Figures, 'items'>({
      sections: ['items'],
      signature: String,
      maxAgeMs: 60_000,
    });
    let value = 1;
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const build = async () => {
      const read = value;
      if (read === 1) await gate;
      return { items: { a: read } };
    };
    const early = c.current(build);
    value = 2;
    c.expire();
    const late = c.current(build);
    release();
    expect((await early).figures.items.a).toBe(2);
    expect((await late).figures.items.a).toBe(2);
    expect(await c.current(build)).toBe(await late);
  });
});
