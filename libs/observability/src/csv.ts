/**
 * One CSV field (RFC 4180), for every CSV the gateway writes (usage reports, the audit
 * export): quoted when it holds a comma, quote or line break; an object as its JSON; a number
 * as is. Text a spreadsheet would run as a formula (=, +, -, @, tab or CR first) gets a
 * leading `'` (OWASP "CSV injection"): key names, model names, a failed login's email are
 * typed by anyone.
 */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return String(value);
  let text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
