import { MetricsService } from './metrics.service';
import { tokenMatches } from './metrics-token';

const line = (text: string, prefix: string) => text.split('\n').find((l) => l.startsWith(prefix));

describe('MetricsService', () => {
  it('exposes every auth path at zero, then counts', async () => {
    const m = new MetricsService();
    let text = await m.render();
    expect(line(text, 'gateway_auth_path_total{path="redis_hit"}')).toMatch(/ 0$/);
    m.authPath('redis_hit');
    m.authPath('redis_hit');
    text = await m.render();
    expect(line(text, 'gateway_auth_path_total{path="redis_hit"}')).toMatch(/ 2$/);
    expect(line(text, 'gateway_auth_path_total{path="lru_hit"}')).toMatch(/ 0$/);
  });

  it('counts upstream errors only for outcomes other than ok', async () => {
    const m = new MetricsService();
    m.upstream('openai', 'gpt-4o', 0.2, 'ok');
    m.upstream('openai', 'gpt-4o', 5, 'timeout');
    const text = await m.render();
    expect(
      line(text, 'gateway_upstream_duration_seconds_count{provider="openai",model="gpt-4o",outcome="ok"}'),
    ).toMatch(/ 1$/);
    expect(
      line(text, 'gateway_upstream_errors_total{provider="openai",model="gpt-4o",outcome="timeout"}'),
    ).toMatch(/ 1$/);
    expect(text).not.toContain(
      'gateway_upstream_errors_total{provider="openai",model="gpt-4o",outcome="ok"}',
    );
  });

  it('adds tokens and spend per model, quota refusals by level and type', async () => {
    const m = new MetricsService();
    m.tokens('mock-small', 10, 5, 0.25);
    m.tokens('mock-small', 1, 2, 0.5);
    m.quotaRefusal('key', 'budget');
    const text = await m.render();
    expect(line(text, 'gateway_tokens_total{model="mock-small",kind="prompt"}')).toMatch(/ 11$/);
    expect(line(text, 'gateway_tokens_total{model="mock-small",kind="completion"}')).toMatch(/ 7$/);
    expect(line(text, 'gateway_spend_usd_total{model="mock-small"}')).toMatch(/ 0.75$/);
    expect(line(text, 'gateway_quota_refusals_total{level="key",type="budget"}')).toMatch(/ 1$/);
  });

  it('reads tracked gauges at scrape time', async () => {
    const m = new MetricsService();
    let depth = 3;
    m.trackLedgerDepth(() => depth);
    m.trackCacheSize('api_keys', () => 42);
    m.ledgerFlushFailure();
    expect(line(await m.render(), 'gateway_ledger_queue_depth')).toMatch(/ 3$/);
    depth = 7;
    const text = await m.render();
    expect(line(text, 'gateway_ledger_queue_depth ')).toMatch(/ 7$/);
    expect(line(text, 'gateway_cache_entries{cache="api_keys"}')).toMatch(/ 42$/);
    expect(line(text, 'gateway_ledger_flush_failures_total')).toMatch(/ 1$/);
    expect(text).toContain('gateway_process_cpu_seconds_total');
  });

  it('two instances do not share state', async () => {
    const a = new MetricsService();
    const b = new MetricsService();
    a.authPath('db_hit');
    expect(line(await b.render(), 'gateway_auth_path_total{path="db_hit"}')).toMatch(/ 0$/);
  });
});

describe('tokenMatches', () => {
  it('accepts only the exact bearer token', () => {
    expect(tokenMatches('s3cret-token', 'Bearer s3cret-token')).toBe(true);
    expect(tokenMatches('s3cret-token', 'bearer s3cret-token')).toBe(true);
    expect(tokenMatches('s3cret-token', 'Bearer s3cret-tokeN')).toBe(false);
    expect(tokenMatches('s3cret-token', 'Bearer s3cret')).toBe(false);
    expect(tokenMatches('s3cret-token', 's3cret-token')).toBe(false);
    expect(tokenMatches('s3cret-token', undefined)).toBe(false);
  });
});
