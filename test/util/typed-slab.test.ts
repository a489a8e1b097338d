// TypedSlab: the arrays carved from one buffer are the sizes asked, aligned, never overlapping, and
// a slab asked for more than it holds says so instead of handing out a short or shared array.
import { describe, expect, it } from 'vitest';
import { TypedSlab } from '../../src/util/typed-slab.ts';

describe('TypedSlab', () => {
  it('carves aligned, disjoint arrays of the asked lengths from one buffer, in any order', () => {
    const lengths = { f64: [3, 1, 7], u32: [5, 1], i16: [9, 3, 1] };
    const bytes = 11 * 8 + 6 * 4 + 13 * 2;
    const slab = new TypedSlab(TypedSlab.room(bytes, 8));
    const arrays = [
      slab.i16(9),
      slab.f64(3),
      slab.u32(5),
      slab.i16(3),
      slab.f64(1),
      slab.i16(1),
      slab.u32(1),
      slab.f64(7),
    ];
    expect(arrays.map((a) => a.length).sort()).toEqual(
      [...lengths.f64, ...lengths.u32, ...lengths.i16].sort(),
    );
    expect(new Set(arrays.map((a) => a.buffer)).size).toBe(1);
    for (const a of arrays) expect(a.byteOffset % a.BYTES_PER_ELEMENT).toBe(0);
    // Disjoint: writing each array's own mark leaves every other array's marks as they were.
    arrays.forEach((a, k) => {
      a.fill(k + 1);
    });
    arrays.forEach((a, k) => {
      expect([...a].every((v) => v === k + 1)).toBe(true);
    });
  });

  it('refuses an array past its end', () => {
    const slab = new TypedSlab(16);
    slab.f64(2);
    expect(() => slab.i16(1)).toThrow(RangeError);
  });
});
