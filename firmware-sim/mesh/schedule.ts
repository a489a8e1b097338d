// A binary min-heap of items by `dueMs`: the mesh asks "who is due now?" in O(due · log n) per tick
// instead of scanning every node. Items are mutated only through `replaceTop`, so the order holds.

export interface Due {
  dueMs: number;
}

export class DueHeap<T extends Due> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    this.items.push(item);
    this.siftUp(this.items.length - 1);
  }

  pop(): T | undefined {
    const top = this.items[0];
    const last = this.items.pop();
    if (top !== undefined && last !== undefined && this.items.length > 0) {
      this.items[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  /** Gives the top item a new due time and restores the order. */
  replaceTop(dueMs: number): void {
    const top = this.items[0];
    if (!top) return;
    top.dueMs = dueMs;
    this.siftDown(0);
  }

  clear(): void {
    this.items.length = 0;
  }

  private siftUp(i: number): void {
    const items = this.items;
    const item = items[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent]!;
      if (p.dueMs <= item.dueMs) break;
      items[i] = p;
      i = parent;
    }
    items[i] = item;
  }

  private siftDown(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && items[r]!.dueMs < items[l]!.dueMs ? r : l;
      if (items[child]!.dueMs >= item.dueMs) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = item;
  }
}
