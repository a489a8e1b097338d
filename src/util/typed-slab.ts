// One backing store for small typed arrays that live and die together (one owner's rings, one
// device's counters). V8 gives every typed array its own ArrayBuffer, and every ArrayBuffer a heap
// object, a native extension and, over 64 bytes, a malloc'd store of its own: ~200 bytes a piece
// before its data, as much as the data itself for a unit's trend rings. Carved out of one buffer,
// the arrays of an owner share one of each. The slab is sized up front and never grows.

const ALIGN = 8;

export class TypedSlab {
  private readonly buffer: ArrayBuffer;
  private offset = 0;

  /** `bytes`: the arrays' bytes; room for each array's alignment is added (see {@link TypedSlab.room}). */
  constructor(bytes: number) {
    this.buffer = new ArrayBuffer(bytes);
  }

  /** Bytes a slab needs for arrays of `bytes` in all, `arrays` of them, whatever their order. */
  static room(bytes: number, arrays: number): number {
    return bytes + arrays * (ALIGN - 1);
  }

  f64(length: number): Float64Array {
    return new Float64Array(this.buffer, this.take(length * 8), length);
  }

  u32(length: number): Uint32Array {
    return new Uint32Array(this.buffer, this.take(length * 4), length);
  }

  i16(length: number): Int16Array {
    return new Int16Array(this.buffer, this.take(length * 2), length);
  }

  private take(bytes: number): number {
    const at = Math.ceil(this.offset / ALIGN) * ALIGN;
    if (at + bytes > this.buffer.byteLength) {
      throw new RangeError(`TypedSlab: ${bytes} bytes asked at ${at} of ${this.buffer.byteLength}`);
    }
    this.offset = at + bytes;
    return at;
  }
}
