import type { ChildProcess } from 'node:child_process';
import type { EmbeddedPostgres } from '@app/database';

export default async function globalTeardown(): Promise<void> {
  const g = globalThis as Record<string, unknown>;
  (g.__GW_REDIS__ as ChildProcess | undefined)?.kill('SIGKILL');
  await (g.__GW_PG__ as EmbeddedPostgres | undefined)?.stop();
}
