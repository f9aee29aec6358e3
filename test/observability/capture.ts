import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Everything written to process.stdout while active (not passed through: keeps the test output clean). */
export function captureStdout(): { text(): string; restore(): void } {
  const chunks: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stdout.write);
  return { text: () => chunks.join(''), restore: () => spy.mockRestore() };
}

/** A LOG_FILE path in a directory that does not exist yet (the logger must create it). */
export function logFilePath(): string {
  return join(mkdtempSync(join(tmpdir(), 'gw-logs-')), 'logs', 'app.log');
}

/** The value of one sample of a Prometheus exposition, or undefined when the series is absent. */
export function sample(text: string, series: string): number | undefined {
  const l = text.split('\n').find((x) => x.startsWith(`${series} `));
  return l === undefined ? undefined : Number(l.slice(series.length + 1));
}

export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const APP_MODULE = readFileSync(join(__dirname, '../../apps/gateway/src/app.module.ts'), 'utf8');

/**
 * Which capabilities the gateway's AppModule wires (read from its source, so a suite can be
 * skipped, loudly, while a lib has not landed): the completions route, and completions
 * metered by the quota lib (reservations, counters, ledger).
 */
export const wired = {
  completions: /CompletionsModule\.forRoot\(/.test(APP_MODULE),
  meteredCompletions: /CompletionsModule\.forRoot\(\s*\{[^}]*meter/.test(APP_MODULE),
};

/** `describe`/`it` when `ok`, else skipped with a message on stderr naming what is missing. */
export function when(ok: boolean, what: string): { describe: jest.Describe; it: jest.It } {
  if (!ok) process.stderr.write(`\n  !!! SKIPPED until AppModule wires ${what} !!!\n\n`);
  return { describe: (ok ? describe : describe.skip) as jest.Describe, it: (ok ? it : it.skip) as jest.It };
}
