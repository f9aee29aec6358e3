import { rmSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import type { EmbeddedPostgres } from '@app/database';

export default async function globalTeardown(): Promise<void> {
  const g = globalThis as Record<string, unknown>;
  (g.__GW_REDIS__ as ChildProcess | undefined)?.kill('SIGKILL');
  await (g.__GW_PG__ as EmbeddedPostgres | undefined)?.stop();
  // the run's PostgreSQL data (a few hundred MB after a full run): left behind, runs filled the disk
  const dir = g.__GW_PG_DIR__ as string | undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
}
