import request from 'supertest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGateway, GatewayProcess, startGateway } from '../harness/gateway-process';
import { freePort } from '../harness/servers';

/**
 * The README's quick start: `npm start` (the built gateway) with no environment but a port:
 * embedded PostgreSQL under DATA_DIR, first-start admin printed once, data kept across restarts.
 */
describe('quick start on embedded defaults (built gateway, subprocess)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gw-quickstart-'));
  let pgPort: number;
  let gw: GatewayProcess | undefined;

  beforeAll(async () => {
    buildGateway();
    pgPort = await freePort();
  });
  afterAll(async () => {
    if (gw && gw.proc.exitCode === null) {
      gw.proc.kill('SIGTERM');
      await gw.exited;
    }
  });

  const start = () =>
    startGateway({
      // Nothing else: no DATABASE_URL, REDIS_URL, MASTER_KEY, JWT_SECRET.
      NODE_ENV: '',
      MASTER_KEY: '',
      JWT_SECRET: '',
      BOOTSTRAP_ADMIN: '',
      BCRYPT_ROUNDS: '',
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(pgPort),
    });

  it('serves /health within 60 s, prints the first admin once, and a restart reuses the data', async () => {
    const t0 = Date.now();
    gw = await start();
    await request(gw.url).get('/health').expect(200);
    expect(Date.now() - t0).toBeLessThan(60_000);
    const m = /admin login (\S+) \/ (\S+)/.exec(gw.stdout());
    expect(m).not.toBeNull();
    const [, email, password] = m!;
    await request(gw.url).post('/auth/login').send({ email, password }).expect(200);
    // the mock model answers with no network
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);

    gw = await start();
    expect(gw.stdout()).not.toMatch(/admin login/);
    const res = await request(gw.url).post('/auth/login').send({ email, password }).expect(200);
    expect(res.body.user.email).toBe(email);
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
  }, 120_000);
});
