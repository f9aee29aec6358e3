/** Plain-text tables for command output (fixed widths, so rows can be printed as they stream). */
export interface Column<T> {
  header: string;
  width: number;
  value: (row: T) => string;
  align?: 'left' | 'right';
}

function fit(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  const flat = text.replace(/\s+/g, ' ');
  const cut = flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
  return align === 'right' ? cut.padStart(width) : cut.padEnd(width);
}

export function headerLines<T>(columns: Column<T>[]): string[] {
  return [
    columns
      .map((c) => fit(c.header, c.width, c.align))
      .join(' | ')
      .trimEnd(),
    columns.map((c) => '-'.repeat(c.width)).join('-+-'),
  ];
}

export function rowLine<T>(columns: Column<T>[], row: T): string {
  return columns
    .map((c) => fit(c.value(row), c.width, c.align))
    .join(' | ')
    .trimEnd();
}

/** Header and rows, with each column as wide as its widest cell (up to its `width`). */
export function table<T>(columns: Column<T>[], rows: T[]): string[] {
  const sized = columns.map((c) => ({
    ...c,
    width: Math.min(c.width, Math.max(c.header.length, ...rows.map((r) => c.value(r).length))),
  }));
  return [...headerLines(sized), ...rows.map((r) => rowLine(sized, r))];
}

/** `2026-05-03 14:22` (UTC), or the fallback for null. */
export function when(iso: string | null, fallback = 'never'): string {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)}` : fallback;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function usd(n: number): string {
  return n.toFixed(6).replace(/0{1,4}$/, '');
}
