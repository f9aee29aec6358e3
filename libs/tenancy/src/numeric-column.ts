/**
 * TypeORM transformer for bigint / numeric columns, which pg returns as strings. Limits,
 * counters and USD amounts here fit a JS number exactly.
 */
export const numericColumn = {
  to: (v: number | null | undefined) => v,
  from: (v: string | null) => (v === null ? null : Number(v)),
};
