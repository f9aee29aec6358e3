import type { UsageReportResponse, UsageRow } from '../dto/usage.dto';

const GROUP_COLUMNS: Record<string, (keyof UsageRow)[]> = {
  day: ['day'],
  model: ['model'],
  user: ['user_id'],
  key: ['api_key_id', 'key_name'],
};
const FIGURES: (keyof UsageRow)[] = [
  'requests',
  'prompt_tokens',
  'completion_tokens',
  'total_tokens',
  'cache_write_tokens',
  'cache_read_tokens',
  'cost_usd',
];

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. Text that a
 * spreadsheet would run as a formula (=, +, -, @, tab, CR first) is prefixed with `'`
 * (OWASP "CSV injection"): key names and model names are user input.
 */
export function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return String(v);
  let s = String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** GET /api/v1/usage?format=csv: a header line, one line per group, CRLF line ends. */
export function usageCsv(report: UsageReportResponse): string {
  const columns = [...(GROUP_COLUMNS[report.group_by] ?? []), ...FIGURES];
  const lines = [columns.join(',')];
  for (const row of report.data) lines.push(columns.map((c) => csvField(row[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}
