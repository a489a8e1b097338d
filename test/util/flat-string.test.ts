// flatString keeps the characters: a kept key is the same key, whatever it is made of.
import { describe, expect, it } from 'vitest';
import { conditionKey } from '../../src/alarms/alarm.ts';
import { flatString } from '../../src/util/flat-string.ts';

describe('flatString', () => {
  it('gives the same string for keys made by joins, ASCII or not', () => {
    for (const [group, subject] of [
      ['zone-1', 'R-0042'],
      ['zöne-ä', 'Rack 7 — Süd'],
      ['群組', '机架-🌡'],
    ] as const) {
      const key = conditionKey('inlet-recommended', group, subject);
      const flat = flatString(key);
      expect(flat).toBe(key);
      expect(new Map([[flat, 1]]).get(key)).toBe(1);
    }
  });

  it('keeps a string that UTF-8 cannot carry (a lone surrogate) as it is', () => {
    const odd = `zone-${String.fromCharCode(0xd800)}-1`;
    expect(flatString(odd)).toBe(odd);
  });
});
