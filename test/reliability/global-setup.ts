import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import harnessSetup from '../harness/global-setup';

/** The e2e harness (PostgreSQL template, Redis), plus a directory where each spec leaves its figures. */
export default async function globalSetup(): Promise<void> {
  process.env.REL_FIGURES_DIR = mkdtempSync(join(tmpdir(), 'gw-reliability-'));
  process.env.REL_STARTED_AT = new Date().toISOString();
  await harnessSetup();
}
