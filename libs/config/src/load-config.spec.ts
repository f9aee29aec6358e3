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
    expect(() => loadConfig({ DATA_DIR: dir(), PORT: 'abc' })).toThrow(/^PORT .*\(got "abc"\)$/);
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
