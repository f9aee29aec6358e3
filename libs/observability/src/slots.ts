/**
 * A set of the things in flight (responses, batches) for code that adds and removes one per
 * request, without a `Set`: issue 18, docs/BENCHMARKS.md "Old tables keep young requests".
 *
 * A `Set` or `Map` that holds a few entries at a time is reallocated by V8 as it grows and
 * shrinks around them (a new hash table on add past its capacity and on delete below a
 * quarter of it), and each replaced table keeps its entries and a pointer to its successor.
 * Once a replaced table has been promoted to the old generation, young-generation
 * collections treat what it points at as alive until the next full collection: every
 * request that passed through the set is copied and promoted with everything it
 * references. Here an array's slot is overwritten in place and freed slots are reused: the
 * array is reallocated only when more are in flight than ever before.
 */
export class Slots<T> {
  private readonly slots: (T | undefined)[] = [];
  private readonly free: number[] = [];
  private count = 0;

  /** Holds `item`; returns its slot, for `remove`. */
  add(item: T): number {
    const slot = this.free.length ? this.free.pop()! : this.slots.length;
    this.slots[slot] = item;
    this.count++;
    return slot;
  }

  /** Lets go of the item in `slot` (once; a second call does nothing). */
  remove(slot: number): void {
    if (this.slots[slot] === undefined) return;
    this.slots[slot] = undefined;
    this.free.push(slot);
    this.count--;
  }

  get size(): number {
    return this.count;
  }

  /** The items held now, in slot order. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (const item of this.slots) if (item !== undefined) yield item;
  }
}
