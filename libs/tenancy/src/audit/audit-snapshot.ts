/**
 * What an audit entry may hold of a row: its API response shape, minus anything secret.
 * Responses never carry hashes or passwords already; this is the second lock, so a field
 * added to a response later cannot leak into the trail by accident.
 */
const SECRET_FIELD = /(hash|password|secret|token)|^key$/i;
/** Fields every change touches: noise in a diff. */
const VOLATILE = new Set(['updated_at', 'last_used_at', 'current_quota_usage', 'spend']);

export type Snapshot = Record<string, unknown>;

export function cleanSnapshot(value: object | null | undefined): Snapshot | null {
  if (!value) return null;
  const out: Snapshot = {};
  for (const [k, v] of Object.entries(value)) {
    if (SECRET_FIELD.test(k) || v === undefined) continue;
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date) ? cleanSnapshot(v) : v;
  }
  return out;
}

/** The fields that differ, each side holding only those (updated_at and usage counters ignored). */
export function changedFields(before: object, after: object): { before: Snapshot; after: Snapshot } {
  const b = cleanSnapshot(before) ?? {};
  const a = cleanSnapshot(after) ?? {};
  const out = { before: {} as Snapshot, after: {} as Snapshot };
  for (const k of new Set([...Object.keys(b), ...Object.keys(a)])) {
    if (VOLATILE.has(k) || JSON.stringify(b[k]) === JSON.stringify(a[k])) continue;
    out.before[k] = b[k] ?? null;
    out.after[k] = a[k] ?? null;
  }
  return out;
}
