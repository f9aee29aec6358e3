import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { JWT_SECRET, MASTER_KEY } from './app';
import { sourcesChangedSince } from './build';
import { freePort } from './servers';

const ROOT = resolve(__dirname, '../..');
export const MAIN_JS = join(ROOT, 'dist/apps/gateway/src/main.js');

/**
 * Written by buildGateway after a successful `nest build gateway` (which also copies the admin
 * page's assets): dist/apps/gateway/src/main.js alone does not say the gateway was built, since
 * `nest build cli` compiles the same tree without the gateway's assets.
 */
const BUILT_STAMP = join(ROOT, 'dist/.gateway-built');

/** Whether the gateway must be built again: no build of buildGateway's, or a source changed since. */
function distStale(): boolean {
  if (!existsSync(MAIN_JS) || !existsSync(BUILT_STAMP)) return true;
  return sourcesChangedSince(ROOT, statSync(BUILT_STAMP).mtimeMs);
}

/**
 * `nest build gateway` when the last gateway build is older than a source (so once per run,
 * not once per test file: eight files start gateway processes). GW_SKIP_BUILD=1 reuses any
 * existing dist/.
 */
export function buildGateway(): void {
  if (existsSync(MAIN_JS) && (process.env.GW_SKIP_BUILD === '1' || !distStale())) return;
  const startedAt = new Date();
  const r = spawnSync('npx', ['nest', 'build', 'gateway'], { cwd: ROOT, encoding: 'utf8', timeout: 180000 });
  if (r.status !== 0 || !existsSync(MAIN_JS)) {
    throw new Error(`nest build gateway failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  // stamped with the build's start: a source saved during the build makes the next call build again
  writeFileSync(BUILT_STAMP, '');
  utimesSync(BUILT_STAMP, startedAt, startedAt);
}

export interface GatewayProcess {
  proc: ChildProcess;
  url: string;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name) once the process ended. */
  exited: Promise<number | string>;
}

/** The real gateway (`node dist/apps/gateway/src/main.js`) on a loopback port, started and listening. */
export async function startGateway(env: Record<string, string>): Promise<GatewayProcess> {
  const port = await freePort();
  const proc = spawn(process.execPath, [MAIN_JS], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-proc-data-')),
      MASTER_KEY,
      JWT_SECRET,
      BCRYPT_ROUNDS: '4',
      BOOTSTRAP_ADMIN: 'false',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | string>((r) =>
    proc.once('exit', (code, signal) => r(code ?? signal ?? -1)),
  );
  const started = Date.now();
  while (!out.includes('llm-gateway listening on')) {
    if (proc.exitCode !== null || Date.now() - started > 60000) {
      proc.kill('SIGKILL');
      throw new Error(
        `gateway did not start (exit ${proc.exitCode}):\n${out.slice(-3000)}\n${err.slice(-3000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, url: `http://127.0.0.1:${port}`, stdout: () => out, stderr: () => err, exited };
}
