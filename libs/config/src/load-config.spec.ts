import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './load-config';

const dir = () => mkdtempSync(join(tmpdir(), 'gw-config-'));

describe('loadConfig', () => {
  it('applies defaults and parses types', () => {
    const c = loadConfig({ DATA_DIR: dir(), PORT: '8080', MIGRATIONS_RUN: 'false', JWT_TTL: '15m' });
    expect(c.PORT).toBe(8080);
    expect(c.MIGRATIONS_RUN).toBe(false);
    expect(c.jwtTtlSeconds).toBe(900);
    expect(c.bodyLimitBytes).toBe(1024 * 1024);
    expect(c.BCRYPT_ROUNDS).toBe(10);
  });

  it('a reservation outlives its request: TTL derived from the upstream timeout, or refused when shorter', () => {
    expect(loadConfig({ DATA_DIR: dir() }).QUOTA_RESERVATION_TTL_SECONDS).toBe(660);
    expect(
      loadConfig({ DATA_DIR: dir(), UPSTREAM_TOTAL_TIMEOUT_MS: '20000' }).QUOTA_RESERVATION_TTL_SECONDS,
    ).toBe(80);
    expect(
      loadConfig({ DATA_DIR: dir(), QUOTA_RESERVATION_TTL_SECONDS: '605' }).QUOTA_RESERVATION_TTL_SECONDS,
    ).toBe(605);
    expect(() => loadConfig({ DATA_DIR: dir(), QUOTA_RESERVATION_TTL_SECONDS: '600' })).toThrow(
      /^QUOTA_RESERVATION_TTL_SECONDS must be at least UPSTREAM_TOTAL_TIMEOUT_MS \+ 5 s = 605 \(got "600"\): a request must not outlive its reservation$/,
    );
    expect(loadConfig({ DATA_DIR: dir() }).QUOTA_MIN_COMPLETION_TOKENS).toBe(16);
  });

  it('names the bad variable in one line', () => {
    expect(() => loadConfig({ DATA_DIR: dir(), PORT: 'abc' })).toThrow(ConfigError);
    expect(() => loadConfig({ DATA_DIR: dir(), PORT: 'abc' })).toThrow(
      /^PORT must be a number \(got "abc"\)$/,
    );
    expect(() => loadConfig({ DATA_DIR: dir(), PORT: '80.5' })).toThrow(/^PORT must be a whole number/);
    expect(() => loadConfig({ DATA_DIR: dir(), PORT: '70000' })).toThrow(
      /^PORT must not be greater than 65535/,
    );
    expect(() => loadConfig({ DATA_DIR: dir(), LOG_LEVEL: 'loud' })).toThrow(/^LOG_LEVEL /);
    expect(() => loadConfig({ DATA_DIR: dir(), DATABASE_URL: 'mysql://x' })).toThrow(
      /^DATABASE_URL must be a postgres/,
    );
  });

  it('never echoes a secret value in the error', () => {
    try {
      loadConfig({ DATA_DIR: dir(), MASTER_KEY: 'short-secret' });
      throw new Error('expected failure');
    } catch (e) {
      expect((e as Error).message).toMatch(/^MASTER_KEY must be at least 16/);
      expect((e as Error).message).not.toContain('short-secret');
    }
  });

  it('generates development secrets once and keeps them in DATA_DIR', () => {
    const d = dir();
    const a = loadConfig({ DATA_DIR: d });
    const b = loadConfig({ DATA_DIR: d });
    expect(a.masterKey).toBe(b.masterKey);
    expect(a.jwtSecret).toBe(b.jwtSecret);
    expect(JSON.parse(readFileSync(join(d, 'secrets.json'), 'utf8')).MASTER_KEY).toBe(a.masterKey);
  });

  it('refuses to start in production without secrets', () => {
    expect(() => loadConfig({ DATA_DIR: dir(), NODE_ENV: 'production' })).toThrow(
      /^MASTER_KEY must be set when NODE_ENV=production$/,
    );
    expect(() => loadConfig({ DATA_DIR: dir(), NODE_ENV: 'production', MASTER_KEY: 'x'.repeat(20) })).toThrow(
      /^JWT_SECRET must be set/,
    );
  });
});

describe('loadConfig: Redis shapes', () => {
  it('single node, cluster and sentinel resolve to one target', () => {
    expect(loadConfig({ DATA_DIR: dir() }).redis).toBeNull();
    expect(loadConfig({ DATA_DIR: dir(), REDIS_URL: 'redis://r:6379/0' }).redis).toEqual({
      kind: 'single',
      url: 'redis://r:6379/0',
      commandTimeoutMs: 2000,
    });
    expect(
      loadConfig({ DATA_DIR: dir(), REDIS_URL: 'redis://r', REDIS_COMMAND_TIMEOUT_MS: '0' }).redis
        ?.commandTimeoutMs,
    ).toBeUndefined();
    expect(
      loadConfig({
        DATA_DIR: dir(),
        REDIS_CLUSTER_NODES: 'a:7000,10.0.0.2:7001,[::1]:7002',
        REDIS_PASSWORD: 'pw',
        REDIS_TLS: 'true',
      }).redis,
    ).toEqual({
      kind: 'cluster',
      nodes: [
        { host: 'a', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '::1', port: 7002 },
      ],
      username: undefined,
      password: 'pw',
      tls: true,
      commandTimeoutMs: 2000,
    });
    expect(
      loadConfig({ DATA_DIR: dir(), REDIS_SENTINELS: 's1:26379,s2:26379', REDIS_SENTINEL_NAME: 'main' })
        .redis,
    ).toMatchObject({
      kind: 'sentinel',
      name: 'main',
      sentinels: [{ host: 's1', port: 26379 }, { host: 's2' }],
    });
  });

  it('a wrong combination is one line naming the variables', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [
        { REDIS_URL: 'redis://r', REDIS_CLUSTER_NODES: 'a:1' },
        /^REDIS_URL and REDIS_CLUSTER_NODES are both set/,
      ],
      [{ REDIS_SENTINELS: 'a:1' }, /^REDIS_SENTINEL_NAME must be set with REDIS_SENTINELS/],
      [{ REDIS_SENTINEL_NAME: 'm' }, /^REDIS_SENTINEL_NAME is set without REDIS_SENTINELS$/],
      [{ REDIS_URL: 'redis://r', REDIS_PASSWORD: 'x' }, /^REDIS_PASSWORD applies to REDIS_CLUSTER_NODES/],
      [
        { REDIS_CLUSTER_NODES: 'a' },
        /^REDIS_CLUSTER_NODES must be a list like host1:6379,host2:6379 \(got "a"\)$/,
      ],
      [
        { REDIS_CLUSTER_NODES: 'a:1', REDIS_SENTINEL_PASSWORD: 'x' },
        /^REDIS_SENTINEL_PASSWORD is set without/,
      ],
    ];
    for (const [env, re] of bad) expect(() => loadConfig({ DATA_DIR: dir(), ...env })).toThrow(re);
  });
});
