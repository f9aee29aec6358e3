import { csvField } from '@app/observability';
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
 * GET /api/v1/usage?format=csv: a header line, one line per group, CRLF line ends. Split
 * (split_by): the day, the series' columns and `other` (true on the folded rest of a day).
 */
export function usageCsv(report: UsageReportResponse): string {
  const groups = report.split_by
    ? ['day' as const, ...GROUP_COLUMNS[report.split_by], 'other' as const]
    : (GROUP_COLUMNS[report.group_by] ?? []);
  const columns = [...groups, ...FIGURES];
  const lines = [columns.join(',')];
  for (const row of report.data) lines.push(columns.map((c) => csvField(row[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}
