import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { JWT_SECRET, MASTER_KEY } from './app';
import { freePort } from './servers';

const ROOT = resolve(__dirname, '../..');
export const MAIN_JS = join(ROOT, 'dist/apps/gateway/src/main.js');

/** Whether a file under apps/ or libs/ (or a build setting) changed after dist/ was built. */
function distStale(): boolean {
  if (!existsSync(MAIN_JS)) return true;
  const built = statSync(MAIN_JS).mtimeMs;
  const newer = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((e) => {
      const p = join(dir, e.name);
      if (e.isDirectory()) return e.name !== 'node_modules' && newer(p);
      return statSync(p).mtimeMs > built;
    });
  const settings = ['tsconfig.json', 'tsconfig.build.json', 'nest-cli.json', 'package-lock.json'];
  return (
    settings.some((f) => existsSync(join(ROOT, f)) && statSync(join(ROOT, f)).mtimeMs > built) ||
    newer(join(ROOT, 'apps')) ||
    newer(join(ROOT, 'libs'))
  );
}

/**
 * `nest build gateway` when dist/ is older than a source (so once per run, not once per test
 * file: eight files start gateway processes). GW_SKIP_BUILD=1 reuses any existing dist/.
 */
export function buildGateway(): void {
  if (existsSync(MAIN_JS) && (process.env.GW_SKIP_BUILD === '1' || !distStale())) return;
  const r = spawnSync('npx', ['nest', 'build', 'gateway'], { cwd: ROOT, encoding: 'utf8', timeout: 180000 });
  if (r.status !== 0 || !existsSync(MAIN_JS)) {
    throw new Error(`nest build gateway failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
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
