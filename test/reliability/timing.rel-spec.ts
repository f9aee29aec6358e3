import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import request from 'supertest';
import { createTestApp, TestApp } from '../harness/app';
import { createTenantWithAdmin, TenantSession } from '../harness/factories';
import { Figures, median, quantile } from './figures';

/**
 * Issue 9, timing: secrets are compared with constant-time primitives (checked in the
 * source), and a login for an unknown email costs what a wrong password costs (measured).
 */
const fig = new Figures('timing', 'Timing: secret comparisons and login', 4);

const ROOT = resolve(__dirname, '../..');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === 'node_modules' || f === 'public' ? [] : sources(p);
    return p.endsWith('.ts') && !p.endsWith('.spec.ts') ? [p] : [];
  });
}

/** Identifiers that hold an operator secret or a credential hash. */
const SECRET =
  /\b(masterKey|MASTER_KEY|METRICS_TOKEN|metricsToken|jwtSecret|JWT_SECRET|passwordHash|password_hash|keyHash|key_hash|ADMIN_PASSWORD)\b/;
/** A comparison on the same line that is not constant-time. */
const PLAIN_COMPARE = /(===|!==|[^=!<>]==[^=]|!=[^=]|\.equals\(|localeCompare\(|\.startsWith\(|\.includes\()/;
/** Presence checks are fine: `=== undefined`, `!== null`, `=== ''`, `!x`. */
const PRESENCE = /(===|!==|==|!=)\s*(undefined|null|''|"")/;

describe('secret comparisons are constant-time', () => {
  it('no operator secret or credential hash is compared with ===, equals or the like; the comparisons use timingSafeEqual', () => {
    const files = [...sources(join(ROOT, 'libs')), ...sources(join(ROOT, 'apps'))];
    const plain: string[] = [];
    const constantTime: string[] = [];
    for (const f of files) {
      const lines = readFileSync(f, 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (/^\s*(\/\/|\*)/.test(line)) return;
        const where = `${relative(ROOT, f)}:${i + 1}`;
        if (/timingSafeEqual\(|safeEqual\(|tokenMatches\(|bcrypt\.compare\(/.test(line))
          constantTime.push(`${where}: ${line.trim()}`);
        if (SECRET.test(line) && PLAIN_COMPARE.test(line) && !PRESENCE.test(line))
          plain.push(`${where}: ${line.trim()}`);
      });
    }
    const text = (p: string) => readFileSync(join(ROOT, p), 'utf8');
    // the two operator secrets: master key (AuthService.isMasterKey) and metrics token (tokenMatches)
    const auth = text('libs/auth/src/auth.service.ts');
    const master = /isMasterKey\([^)]*\)[^{]*\{\s*return safeEqual\(token, this\.config\.masterKey\);/.test(
      auth,
    );
    const safeEq = /function safeEqual[\s\S]{0,200}timingSafeEqual\(sha256\(a\), sha256\(b\)\)/.test(auth);
    const metrics = /function tokenMatches[\s\S]{0,300}timingSafeEqual\(/.test(
      text('libs/observability/src/metrics-token.ts'),
    );
    const metricsUsed = sources(join(ROOT, 'libs/observability/src')).some(
      (f) => /tokenMatches\(/.test(readFileSync(f, 'utf8')) && !f.endsWith('metrics-token.ts'),
    );
    // passwords and legacy key hashes: bcrypt's compare on the low-priority workers (BcryptPool),
    // which login and the legacy fallback call; virtual keys: looked up by sha256 (no comparison of the secret)
    const bcrypt =
      /bcrypt\.compareSync\(/.test(text('libs/auth/src/bcrypt-pool.ts')) &&
      /gate\.compare\(/.test(text('libs/auth/src/auth.service.ts')) &&
      /gate\.compare\(/.test(text('libs/api-keys/src/key-auth.service.ts'));

    fig.table(
      'Constant-time comparisons found in libs/ and apps/',
      ['where', 'code'],
      constantTime.map((c) => {
        const [where, ...code] = c.split(': ');
        return [where, `\`${code.join(': ')}\``];
      }),
    );
    fig.check(
      'plain comparisons (===, equals, startsWith...) of an operator secret or credential hash',
      plain.length,
      '0',
      plain.length === 0,
    );
    fig.check(
      'master key compared with safeEqual (sha256 both sides, then timingSafeEqual)',
      master && safeEq,
      'true',
      master && safeEq,
    );
    fig.check(
      'metrics token compared with timingSafeEqual (tokenMatches, used by /metrics)',
      metrics && metricsUsed,
      'true',
      metrics && metricsUsed,
    );
    fig.check(
      'passwords (and legacy key hashes) compared by bcrypt (compareSync on the BcryptPool workers)',
      bcrypt,
      'true',
      bcrypt,
    );
    expect(plain).toEqual([]);
    expect([master, safeEq, metrics, metricsUsed, bcrypt]).toEqual([true, true, true, true, true]);
  });
});

describe('login timing: unknown email vs wrong password', () => {
  let t: TestApp;
  let a: TenantSession;

  beforeAll(async () => {
    // a production bcrypt cost, so the comparison dominates as it would in production
    // 35 wrong passwords for one account: above the login throttle's defaults (tested in test/auth).
    t = await createTestApp({
      env: { BCRYPT_ROUNDS: '10', LOGIN_ACCOUNT_LIMIT: '1000000', LOGIN_ADDRESS_LIMIT: '1000000' },
    });
    a = await createTenantWithAdmin(t.url);
  }, 60_000);
  afterAll(() => t?.close());

  it('medians of 30 attempts each are within 0.7-1.4 of each other', async () => {
    const time = async (email: string, password: string) => {
      const t0 = performance.now();
      const res = await request(t.url).post('/auth/login').send({ email, password });
      const ms = performance.now() - t0;
      return { ms, status: res.status };
    };
    const unknown = () =>
      time(`nobody-${Math.random().toString(36).slice(2)}@example.test`, 'some-password-1');
    const wrong = () => time(a.admin.email, 'wrong-password-1');
    const right = () => time(a.admin.email, a.admin.password);
    for (let i = 0; i < 5; i++) await Promise.all([unknown(), wrong()]); // warm-up
    const u: number[] = [];
    const w: number[] = [];
    const r: number[] = [];
    for (let i = 0; i < 30; i++) {
      // interleaved, so drift (GC, other load) hits both series alike
      const x = await unknown();
      const y = await wrong();
      expect([x.status, y.status]).toEqual([401, 401]);
      u.push(x.ms);
      w.push(y.ms);
      if (i % 3 === 0) r.push((await right()).ms);
    }
    const ratio = median(u) / median(w);
    const f = (xs: number[]) => [
      median(xs).toFixed(1),
      quantile(xs, 0.9).toFixed(1),
      Math.min(...xs).toFixed(1),
    ];
    fig.table(
      'POST /auth/login, BCRYPT_ROUNDS=10, sequential, milliseconds',
      ['attempt', 'n', 'median', 'p90', 'min'],
      [
        ['unknown email (401)', u.length, ...f(u)],
        ['known email, wrong password (401)', w.length, ...f(w)],
        ['right password (200, for reference)', r.length, ...f(r)],
      ],
    );
    fig.check(
      'median(unknown email) / median(wrong password)',
      ratio.toFixed(2),
      '0.7-1.4',
      ratio >= 0.7 && ratio <= 1.4,
    );
    fig.note(
      'An unknown email is compared against a decoy bcrypt hash of the same cost (PasswordVerifier), and the answer is the same ' +
        '401 `invalid_credentials` for unknown email, wrong password, disabled user or tenant.',
    );
    expect(ratio).toBeGreaterThanOrEqual(0.7);
    expect(ratio).toBeLessThanOrEqual(1.4);
  }, 120_000);
});
