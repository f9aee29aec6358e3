import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadConfig } from '@app/config';
import { logDestination, REDACT_PATHS } from './logging';
import { SecretScrubber } from './redact';

const MASTER = 'mk-master-key-for-scrub-test-0123';
const KEY = 'sk-AbCdEfGhIjKlMnOpQrStUvWxYz012345abc123';
const JWT =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwidGVuYW50IjoieCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';

describe('SecretScrubber', () => {
  const s = new SecretScrubber([MASTER, 'p"w\\secret-value']);

  it('removes configured secrets, also in their JSON-escaped form', () => {
    expect(s.scrub(`{"msg":"using ${MASTER} now"}`)).toBe('{"msg":"using [redacted] now"}');
    expect(s.scrub(JSON.stringify({ msg: 'x p"w\\secret-value y' }))).not.toContain('secret-value');
  });

  it('removes virtual keys, JWTs, bearer credentials and URL passwords', () => {
    const line = JSON.stringify({
      msg: `key ${KEY} jwt ${JWT} header Bearer opaque-token-123 url postgres://gw:dbpass@db:5432/gw`,
    });
    const out = s.scrub(line);
    for (const secret of [KEY, JWT, 'opaque-token-123', 'dbpass']) expect(out).not.toContain(secret);
    expect(out).toContain('postgres://gw:[redacted]@db:5432/gw');
    expect(out).toContain('Bearer [redacted]');
    expect(() => JSON.parse(out)).not.toThrow();
  });

  it('removes secret-named JSON fields, leaving others alone', () => {
    const out = s.scrub('{"password":"hunter2\\"x","api_key":"abc","email":"a@b.c","tokens":12}');
    expect(JSON.parse(out)).toEqual({
      password: '[redacted]',
      api_key: '[redacted]',
      email: 'a@b.c',
      tokens: 12,
    });
  });

  it('leaves ordinary lines unchanged', () => {
    const line =
      '{"level":30,"req":{"id":"abc","method":"GET","path":"/v1/models"},"status":200,"latency_ms":3}';
    expect(s.scrub(line)).toBe(line);
  });
});

/** stdout stand-in: `chunks` as written, one per write. */
function capture() {
  const chunks: string[] = [];
  const out = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c.toString());
      cb();
    },
  }) as Writable & { isTTY?: boolean };
  return { out, chunks, text: () => chunks.join('') };
}

/** A production config logging to `file` too. */
const withLogFile = (file: string) =>
  loadConfig({
    NODE_ENV: 'production',
    MASTER_KEY: MASTER,
    JWT_SECRET: 'j'.repeat(40),
    LOG_FILE: file,
    DATA_DIR: '/tmp/gw-unit',
  });

describe('logDestination', () => {
  it('writes scrubbed JSON to stdout and LOG_FILE (creating its directory)', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gw-log-')), 'nested', 'dir', 'app.log');
    const config = withLogFile(file);
    const { out, text } = capture();
    const logger = pino(
      { redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
      logDestination(config, out),
    );
    logger.info(
      { headers: { authorization: `Bearer ${MASTER}` }, password: 'pw-1', user: { password: 'pw-2' } },
      'hi',
    );
    logger.warn(`master is ${MASTER}, key ${KEY}`);
    const lines = text().trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
    expect(readFileSync(file, 'utf8')).toBe(text());
    for (const secret of [MASTER, KEY, 'pw-1', 'pw-2']) expect(text()).not.toContain(secret);
    expect(JSON.parse(lines[0])).toMatchObject({
      msg: 'hi',
      password: '[redacted]',
      user: { password: '[redacted]' },
    });
  });

  it('is readable (not JSON) on a development TTY', () => {
    const config = loadConfig({
      NODE_ENV: 'development',
      MASTER_KEY: MASTER,
      JWT_SECRET: 'j'.repeat(40),
      DATA_DIR: '/tmp/gw-unit',
    });
    const { out, text } = capture();
    out.isTTY = true;
    pino(logDestination(config, out)).info({ route: '/v1/models' }, 'request completed');
    expect(text()).toContain('request completed');
    expect(() => JSON.parse(text())).toThrow();
  });
});

describe('logDestination: access lines', () => {
  it('writes the access lines of one turn together at its end, before any later line, in order', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gw-log-')), 'app.log');
    const { out, chunks: writes } = capture();
    const dest = logDestination(withLogFile(file), out);
    dest.writeClean('{"n":1}\n');
    dest.writeClean('{"n":2}\n');
    expect(writes).toEqual([]); // waiting for the end of this turn
    await new Promise((r) => process.nextTick(r));
    expect(writes).toEqual(['{"n":1}\n{"n":2}\n']);
    dest.writeClean('{"n":3}\n');
    dest.write('{"n":4}\n'); // any other line: what waits goes first
    expect(writes).toEqual(['{"n":1}\n{"n":2}\n', '{"n":3}\n', '{"n":4}\n']);
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n');
  });
});
