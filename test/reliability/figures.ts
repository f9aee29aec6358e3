import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Figures of one spec file, saved as JSON under REL_FIGURES_DIR after every change (a spec
 * that dies half-way still leaves what it measured); reporter.js turns them into
 * docs/RELIABILITY.md at the end of the run.
 */
export interface Check {
  name: string;
  value: string;
  expected: string;
  ok: boolean;
}

export interface Table {
  title: string;
  head: string[];
  rows: (string | number)[][];
}

export interface SectionData {
  id: string;
  title: string;
  order: number;
  intro: string[];
  tables: Table[];
  checks: Check[];
  notes: string[];
}

export class Figures {
  private readonly data: SectionData;

  constructor(id: string, title: string, order: number) {
    this.data = { id, title, order, intro: [], tables: [], checks: [], notes: [] };
    this.save();
  }

  intro(text: string): this {
    this.data.intro.push(text);
    return this.save();
  }

  table(title: string, head: string[], rows: (string | number)[][]): this {
    this.data.tables.push({ title, head, rows });
    return this.save();
  }

  /** Records a claim and whether it held; returns `ok` (the spec asserts it with expect as well). */
  check(name: string, value: unknown, expected: string, ok: boolean): boolean {
    this.data.checks.push({ name, value: String(value), expected, ok });
    this.save();
    return ok;
  }

  note(text: string): this {
    this.data.notes.push(text);
    return this.save();
  }

  private save(): this {
    const dir = process.env.REL_FIGURES_DIR;
    if (!dir) return this; // run outside the reliability config: figures are not kept
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${this.data.id}.json`), JSON.stringify(this.data, null, 2));
    return this;
  }
}

export const pct = (n: number, d: number) => (d ? `${((100 * n) / d).toFixed(1)}%` : '-');
export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const quantile = (xs: number[], q: number) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
