/**
 * The in-process store's sliding windows (rpm, tpm), oldest entry first, so that what left the
 * window leaves from the head: O(1) amortised per request instead of a pass over every entry of
 * the window (issue 18: with an rpm limit of 1,000,000 at ~1,000 req/s, copying the 60 s log on
 * every request allocated 350-690 KB per request). An entry older than the newest (the clock
 * stepped back) is inserted at its place, so the order, and with it the figures, stay exact.
 * (TimeOrderedMap also keeps the in-process store's open reservations in expiry order.)
 */

/** Admission times of one rpm window. */
export class RpmLog {
  private times: number[] = [];
  private head = 0;

  get count(): number {
    return this.times.length - this.head;
  }

  /** The oldest time in the window (undefined when empty). */
  get oldest(): number | undefined {
    return this.times[this.head];
  }

  /** Drops the times at or before `cutoff`. */
  trim(cutoff: number): void {
    while (this.head < this.times.length && this.times[this.head] <= cutoff) this.head++;
    if (this.head === this.times.length) {
      this.times = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.times.length) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }

  add(at: number): void {
    const t = this.times;
    if (this.count === 0 || at >= t[t.length - 1]) {
      t.push(at);
      return;
    }
    let lo = this.head;
    let hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid] <= at) lo = mid + 1;
      else hi = mid;
    }
    t.splice(lo, 0, at);
  }
}

/**
 * id -> entry, iterated oldest first by `time(entry)`: insertion order while times only grow;
 * an entry older than the newest (rare: the clock stepped back, a longer TTL) is put in its
 * place, so a walk from the head can stop at the first entry still alive.
 */
export class TimeOrderedMap<V> {
  private entries = new Map<string, V>();
  private newest = -Infinity;

  constructor(private readonly time: (v: V) => number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The oldest entry (undefined when empty). */
  get first(): V | undefined {
    for (const v of this.entries.values()) return v;
    return undefined;
  }

  get(id: string): V | undefined {
    return this.entries.get(id);
  }

  set(id: string, v: V): void {
    this.entries.set(id, v);
    const t = this.time(v);
    if (t >= this.newest) this.newest = t;
    // the Map keeps insertion order, so it is rebuilt in time order
    else this.entries = new Map([...this.entries].sort(([, a], [, b]) => this.time(a) - this.time(b)));
  }

  delete(id: string): void {
    this.entries.delete(id);
    if (this.entries.size === 0) this.newest = -Infinity;
  }

  /** Oldest first (deleting the entry just yielded is safe). */
  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries.entries();
  }

  values(): IterableIterator<V> {
    return this.entries.values();
  }
}

interface TpmEntry {
  at: number;
  tokens: number;
}

/** The reservations in one tpm window: id -> admission time and tokens, in time order, and their sum. */
export class TpmLog {
  private readonly entries = new TimeOrderedMap<TpmEntry>((e) => e.at);
  /** The tokens of every entry in the window. */
  used = 0;

  get size(): number {
    return this.entries.size;
  }

  /** The oldest admission time in the window (undefined when empty). */
  get oldest(): number | undefined {
    return this.entries.first?.at;
  }

  /** Drops the entries admitted at or before `cutoff`. */
  trim(cutoff: number): void {
    for (const [id, e] of this.entries) {
      if (e.at > cutoff) break;
      this.entries.delete(id);
      this.used -= e.tokens;
    }
    if (this.entries.size === 0) this.used = 0;
  }

  add(id: string, at: number, tokens: number): void {
    this.entries.set(id, { at, tokens });
    this.used += tokens;
  }

  /** The entry holds `tokens` from now on; null removes it. */
  correct(id: string, tokens: number | null): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.used += (tokens ?? 0) - e.tokens;
    if (tokens === null) this.entries.delete(id);
    else e.tokens = tokens;
  }

  /** The entries, oldest first. */
  values(): IterableIterator<TpmEntry> {
    return this.entries.values();
  }
}
