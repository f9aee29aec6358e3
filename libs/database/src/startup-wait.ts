import type { LoggerService } from '@nestjs/common';
import { Client } from 'pg';

/** Errors that a wait can cure (the server is starting, or not reachable yet). */
const TRANSIENT = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  '57P03', // the database system is starting up
]);

export function isTransient(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return (
    (!!err?.code && TRANSIENT.has(err.code)) ||
    /timeout|ECONNREFUSED|isn't writeable|isn't ready|Connection is closed|All sentinels are unreachable|Failed to refresh slots cache|ENOTFOUND|EAI_AGAIN/i.test(
      err?.message ?? '',
    )
  );
}

function describe(e: unknown): string {
  const err = e as { code?: string; message?: string };
  return (err?.message || err?.code || String(e)).split('\n')[0];
}

/**
 * Waits for a dependency at start (README "Clean failure"): tries `probe` with back-off
 * (250 ms doubling to 5 s), one structured warning per failed try, until it answers or
 * `timeoutMs` has passed; then throws one line naming what and why. An error no wait can
 * cure (a wrong password, a missing database) throws at once.
 */
export async function waitForDependency(
  what: string,
  probe: () => Promise<unknown>,
  timeoutMs: number,
  logger: LoggerService,
): Promise<void> {
  const started = Date.now();
  let delay = 250;
  for (let attempt = 1; ; attempt++) {
    try {
      await probe();
      if (attempt > 1) logger.log({ msg: `${what} is reachable`, attempt, waited_ms: Date.now() - started });
      return;
    } catch (e) {
      const waited = Date.now() - started;
      if (!isTransient(e)) throw new Error(`${what}: ${describe(e)}`, { cause: e });
      if (waited >= timeoutMs)
        throw new Error(
          `${what} not reachable after ${(waited / 1000).toFixed(1)} s (STARTUP_TIMEOUT_MS=${timeoutMs}): ${describe(e)}`,
          { cause: e },
        );
      const pause = Math.min(delay, timeoutMs - waited);
      logger.warn({ msg: `waiting for ${what}`, attempt, retry_in_ms: pause, error: describe(e) });
      await new Promise((r) => setTimeout(r, pause));
      delay = Math.min(delay * 2, 5000);
    }
  }
}

/** One connection to PostgreSQL, opened and closed (the probe of the start wait). */
export async function probePostgres(url: string): Promise<void> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** host:port of a URL, for messages (never the password). */
export function endpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol.startsWith('redis') ? 6379 : 5432)}`;
  } catch {
    return 'the configured address';
  }
}
