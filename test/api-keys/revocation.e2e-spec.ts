import request from 'supertest';
import { createServer, Server, Socket } from 'node:net';
import { KeyCache, UNSUBSCRIBED_LRU_MS } from '@app/api-keys';
import { createTestApp, describeWithRedis, redisUrl, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, createUser, TenantSession } from '../harness/factories';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A loopback TCP proxy in front of the run's Redis: `cut()` drops every connection through
 * it and refuses new ones (the instance behind it loses Redis), `restore()` lets them in again.
 */
class RedisProxy {
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  private down = false;
  url = '';

  async start(target: string): Promise<void> {
    const { hostname, port } = new URL(target);
    this.server = createServer((client) => {
      if (this.down) return client.destroy();
      const upstream = new Socket();
      upstream.connect(Number(port), hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const { port: own } = this.server.address() as { port: number };
    this.url = `redis://127.0.0.1:${own}`;
  }

  cut(): void {
    this.down = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.down = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

const LONG_CACHES = { KEY_LRU_TTL_SECONDS: '60', KEY_REDIS_TTL_SECONDS: '600' };

describeWithRedis('revocation that cannot be lost (two instances, real Redis and PostgreSQL)', () => {
  const proxyA = new RedisProxy();
  const proxyB = new RedisProxy();
  let A: TestApp;
  let B: TestApp;
  let s: TenantSession;

  beforeAll(async () => {
    await proxyA.start(redisUrl()!);
    await proxyB.start(redisUrl()!);
    A = await createTestApp({ redis: true, env: { ...LONG_CACHES, REDIS_URL: proxyA.url } });
    B = await createTestApp({
      redis: true,
      databaseUrl: A.databaseUrl,
      env: { ...LONG_CACHES, REDIS_URL: proxyB.url },
    });
    s = await createTenantWithAdmin(A.url);
  });
  afterAll(async () => {
    await A.close();
    await B.close();
    await proxyA.stop();
    await proxyB.stop();
  });

  const newKey = async () =>
    (await request(A.url).post('/api/v1/api-keys').set(auth(s.admin.token)).send({ name: 'k' }).expect(201))
      .body as { id: string; key: string };
  const statusOn = async (app: TestApp, key: string) =>
    (await request(app.url).get('/api/v1/me').set('X-API-Key', key)).status;
  /** Polls `app` until it refuses `key` (401) or `withinMs` pass; the last status seen. */
  const refusedWithin = async (app: TestApp, key: string, withinMs: number) => {
    const from = Date.now();
    let status = 200;
    while (Date.now() - from < withinMs) {
      status = await statusOn(app, key);
      if (status === 401) break;
      await sleep(10);
    }
    return status;
  };

  it('a revoke on an instance cut from Redis for 5 s reaches the other instance within 1 s of Redis coming back', async () => {
    const k = await newKey();
    expect(await statusOn(B, k.key)).toBe(200);
    expect(await statusOn(B, k.key)).toBe(200); // cached in B's LRU (60 s) and in Redis (600 s)

    proxyA.cut();
    const cutAt = Date.now();
    await request(A.url).delete(`/api/v1/api-keys/${k.id}`).set(auth(s.admin.token)).expect(200);
    const cacheA = A.app.get(KeyCache);
    expect(cacheA.pendingEvictions).toBeGreaterThan(0); // Redis did not take it: queued

    // During the cut B still has it (the documented worst case: until A reaches Redis).
    let lastServed = 0;
    while (Date.now() - cutAt < 5000) {
      if ((await statusOn(B, k.key)) === 200) lastServed = Date.now();
      await sleep(100);
    }
    proxyA.restore();
    const restoredAt = Date.now();

    let refusedAt = 0;
    while (Date.now() - restoredAt < 3000) {
      const status = await statusOn(B, k.key);
      if (status === 200) lastServed = Date.now();
      else {
        expect(status).toBe(401);
        refusedAt = Date.now();
        break;
      }
      await sleep(20);
    }
    expect(refusedAt).toBeGreaterThan(0);
    expect(refusedAt - restoredAt).toBeLessThan(1000);
    expect(lastServed - restoredAt).toBeLessThan(1000);
    // And it stays refused (the delayed second eviction included); A's queue is empty.
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      expect(await statusOn(B, k.key)).toBe(401);
      await sleep(50);
    }
    expect(cacheA.pendingEvictions).toBe(0);
  });

  it('while its subscription is down an instance trusts its LRU for about 1 s only, and clears it on resubscribe', async () => {
    const k = await newKey();
    expect(await statusOn(B, k.key)).toBe(200);
    const cacheB = B.app.get(KeyCache);
    expect(cacheB.listening).toBe(true);

    proxyB.cut(); // B misses every eviction published from now on
    await sleep(200);
    expect(cacheB.listening).toBe(false);
    await request(A.url).delete(`/api/v1/api-keys/${k.id}`).set(auth(s.admin.token)).expect(200);
    const revokedAt = Date.now();
    let refusedAt = 0;
    while (Date.now() - revokedAt < 3000) {
      if ((await statusOn(B, k.key)) === 401) {
        refusedAt = Date.now();
        break;
      }
      await sleep(20);
    }
    expect(refusedAt).toBeGreaterThan(0);
    expect(refusedAt - revokedAt).toBeLessThan(UNSUBSCRIBED_LRU_MS + 500);

    proxyB.restore();
    const restoredAt = Date.now();
    while (!cacheB.listening && Date.now() - restoredAt < 5000) await sleep(20);
    expect(cacheB.listening).toBe(true);
    expect(cacheB.sizes.lru).toBe(0); // cleared on resubscribe
    expect(await statusOn(B, k.key)).toBe(401);
  });

  it('deleting a user evicts their keys after the delete commits: the other instance refuses them at once', async () => {
    const member = await createUser(A.url, s.tenantId);
    const k = (
      await request(A.url)
        .post('/api/v1/api-keys')
        .set(auth(s.admin.token))
        .send({ name: 'm', user_id: member.id })
        .expect(201)
    ).body as { key: string };
    expect(await statusOn(B, k.key)).toBe(200);
    expect(await statusOn(B, k.key)).toBe(200); // in B's LRU
    await request(A.url).delete(`/api/v1/users/${member.id}`).set(auth(s.admin.token)).expect(204);
    expect(await refusedWithin(B, k.key, 100)).toBe(401);
  });

  it('an eviction pending when the revoking instance stops is sent by its next start (DATA_DIR)', async () => {
    const k = await newKey();
    expect(await statusOn(B, k.key)).toBe(200);
    expect(await statusOn(B, k.key)).toBe(200); // in B's LRU
    proxyA.cut();
    await request(A.url).delete(`/api/v1/api-keys/${k.id}`).set(auth(s.admin.token)).expect(200);
    expect(A.app.get(KeyCache).pendingEvictions).toBeGreaterThan(0);
    await A.close();
    expect(await statusOn(B, k.key)).toBe(200); // nobody told B yet
    proxyA.restore();
    A = await createTestApp({
      redis: true,
      databaseUrl: B.databaseUrl,
      env: { ...LONG_CACHES, REDIS_URL: proxyA.url, DATA_DIR: A.config.DATA_DIR },
    });
    expect(await refusedWithin(B, k.key, 1000)).toBe(401);
    expect(A.app.get(KeyCache).pendingEvictions).toBe(0);
  });
});
