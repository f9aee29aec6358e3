import request from 'supertest';
import { copyFileSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { DataSource } from 'typeorm';
import { createTestApp, MASTER_KEY, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, createUser, TenantSession, UserSession } from '../harness/factories';
import { eventually, launchChromium, signIn, snap, watchProblems } from './browser';

const docsShot = (shot: string, name: string) => {
  if (process.env.UPDATE_DOCS_SCREENSHOT === '1')
    copyFileSync(shot, resolve(__dirname, `../../docs/${name}`));
};

/** RFC 4180: quoted fields with doubled quotes, CRLF or LF line ends. */
function parseCsv(text: string): Record<string, string>[] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  const endField = () => {
    row.push(field);
    field = '';
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') endField();
    else if (c === '\n') {
      endField();
      rows.push(row);
      row = [];
    } else if (c !== '\r') field += c;
  }
  const [header, ...lines] = rows;
  return lines.map((l) => Object.fromEntries(header.map((h, i) => [h, l[i]])));
}

interface AuditEntry {
  action: string;
  target_id: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

/**
 * The console's users, tenants and usage pages in Chromium on the real gateway (one gateway
 * and one browser for the file): each page action is checked through the API it drives
 * (a login with the shown password, a refused login, the ledger's totals) and leaves an
 * audit entry with before/after and no secret.
 */
describe('console pages in Chromium: users, tenants, usage (real gateway, real PostgreSQL)', () => {
  let t: TestApp;
  let a: TenantSession;
  let member: UserSession;
  let browser: Browser;
  let page: Page;
  let problems: string[];
  const secrets: string[] = [MASTER_KEY];

  const auditOf = async (action: string, targetId: string): Promise<AuditEntry[]> => {
    const res = await request(t.url)
      .get('/api/v1/audit-log')
      .query({ action, target_id: targetId })
      .set('Authorization', `Bearer ${MASTER_KEY}`)
      .expect(200);
    for (const s of secrets) expect(JSON.stringify(res.body)).not.toContain(s);
    expect(JSON.stringify(res.body)).not.toMatch(/\$2[aby]\$|password_hash|key_hash/);
    return res.body.data;
  };

  beforeAll(async () => {
    t = await createTestApp({ env: { LEDGER_FLUSH_MS: '50', AUTH_FAILURE_LIMIT: '1000' } });
    a = await createTenantWithAdmin(t.url, 'console-corp');
    member = await createUser(t.url, a.tenantId, 'member');
    secrets.push(a.admin.password, member.password);
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
    problems = watchProblems(page);
  });

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  describe('users page', () => {
    let created: { email: string; password: string; id: string };
    const userRow = (email: string) =>
      page.locator('#users-body tr', { has: page.locator('.user-email', { hasText: email }) });

    it('an admin adds a user; the password is shown once, and the user signs in with it', async () => {
      await signIn(page, t.url, a.admin);
      await page.getByRole('button', { name: 'Users', exact: true }).click();
      await page.getByRole('heading', { name: 'Users' }).waitFor();
      await userRow(member.email).waitFor();
      await page.getByRole('button', { name: 'Add user' }).click();
      const dialog = page.getByRole('dialog', { name: 'Add user' });
      const email = `dana-${Date.now()}@console.test`;
      await dialog.getByLabel("User's email").fill(email);
      await dialog.getByLabel(/Display name/).fill('Dana Developer');
      await dialog.getByLabel('Token quota').fill('50000');
      await dialog.getByLabel('Quota and budget reset').selectOption('monthly');
      await dialog.getByRole('button', { name: 'Add user' }).click();

      const shown = page.getByRole('dialog', { name: `Password for ${email}` });
      await shown.waitFor();
      expect(await shown.innerText()).toContain('It will not be shown again');
      const password = await shown.getByLabel('Initial password').inputValue();
      expect(password).toMatch(/^[A-Za-z0-9]{20}$/);
      secrets.push(password);
      await shown.getByRole('button', { name: 'I have copied it' }).click();
      await shown.waitFor({ state: 'hidden' });
      expect(await page.content()).not.toContain(password);
      expect(await page.locator('#password-value').inputValue()).toBe('');

      const r = userRow(email);
      await r.waitFor();
      expect(await r.locator('td[data-label="Role"]').innerText()).toBe('member');
      expect(await r.locator('td[data-label="Token quota"]').innerText()).toBe('50,000 / month');
      const login = await request(t.url).post('/auth/login').send({ email, password }).expect(200);
      expect(login.body.user.role).toBe('member');
      created = { email, password, id: login.body.user.id };
      const [entry] = await auditOf('user.create', created.id);
      expect(entry.after).toMatchObject({ email, role: 'member', quota_limit: 50000 });
    });

    it('an admin changes the role, then disables the user: sign-in is refused', async () => {
      const r = userRow(created.email);
      await r.getByRole('button', { name: `Edit ${created.email}` }).click();
      const dialog = page.getByRole('dialog', { name: `Edit ${created.email}` });
      await dialog.getByLabel('Role').selectOption('admin');
      await dialog.getByLabel('Budget (USD)').fill('25');
      await dialog.getByRole('button', { name: 'Save changes' }).click();
      await dialog.waitFor({ state: 'hidden' });
      await eventually(async () => (await r.locator('td[data-label="Role"]').innerText()) === 'admin');
      expect(await r.locator('td[data-label="Budget"]').innerText()).toBe('$25.00 / month');
      const [update] = await auditOf('user.update', created.id);
      expect(update.before).toEqual({ role: 'member', max_budget: null });
      expect(update.after).toEqual({ role: 'admin', max_budget: 25 });

      await r.getByRole('button', { name: `Disable ${created.email}` }).click();
      await eventually(async () => (await r.locator('td[data-label="Status"]').innerText()) === 'disabled');
      await request(t.url)
        .post('/auth/login')
        .send({ email: created.email, password: created.password })
        .expect(401);
      const [disabled] = await auditOf('user.update', created.id);
      expect(disabled.before).toEqual({ status: 'active' });
      expect(disabled.after).toEqual({ status: 'disabled' });
      await page.mouse.move(0, 0);
      docsShot(await snap(page, 'admin-users'), 'admin-users.png');

      // Their keys: the keys page, filtered to the user.
      await userRow(member.email)
        .getByRole('button', { name: `Keys ${member.email}` })
        .click();
      await page.getByRole('heading', { name: 'API Keys' }).waitFor();
      expect(await page.getByRole('search', { name: 'Find keys' }).getByLabel('Owner').inputValue()).toBe(
        member.id,
      );
      expect(problems).toEqual([]);
    });

    it('a member has no admin pages, and the admin API refuses them (403)', async () => {
      const mpage = await (await browser.newContext()).newPage();
      await signIn(mpage, t.url, member);
      expect(await mpage.locator('#views-nav').isHidden()).toBe(true);
      for (const name of ['Users', 'Audit log', 'Tenants', 'Usage'])
        expect(await mpage.getByRole('button', { name, exact: true }).count()).toBe(0);
      expect(await mpage.locator('#keys-owner-field').isHidden()).toBe(true);
      for (const path of [
        '/api/v1/users',
        '/api/v1/audit-log',
        '/api/v1/tenants',
        '/api/v1/usage/refusals',
        '/api/v1/usage/limits',
      ])
        await request(t.url).get(path).set(auth(member.token)).expect(403);
      await mpage.context().close();
    });
  });

  describe('tenants page (master key)', () => {
    let opage: Page;
    const tenantRow = (name: string) =>
      opage.locator('#tenants-body tr', { has: opage.locator('.tenant-name', { hasText: name }) });

    it('the operator signs in with the master key (a wrong one is refused inline)', async () => {
      opage = await (await browser.newContext({ viewport: { width: 1360, height: 800 } })).newPage();
      const oproblems = watchProblems(opage);
      await opage.goto(`${t.url}/admin`);
      await opage.getByText('Operator: sign in with the master key').click();
      await opage.getByLabel('Master key').fill('not-the-master-key-0123456789');
      await opage.getByRole('button', { name: 'Use the master key' }).click();
      await opage.locator('#master-error', { hasText: 'That is not the master key.' }).waitFor();
      await opage.getByLabel('Master key').fill(MASTER_KEY);
      await opage.getByRole('button', { name: 'Use the master key' }).click();
      await opage.getByRole('heading', { name: 'Tenants' }).waitFor();
      await tenantRow('console-corp').waitFor();
      // Each tenant's admins by email (the operator knows whom to call); a disabled one is marked.
      const admins = await tenantRow('console-corp').locator('td[data-label="Admins"] li').allInnerTexts();
      expect(admins).toContain(a.admin.email);
      expect(admins.filter((x) => x.endsWith('(disabled)'))).toHaveLength(1);
      // The operator has tenants and the audit log; a tenant's keys and users are its admins' pages.
      expect(await opage.getByRole('button', { name: 'API keys', exact: true }).isHidden()).toBe(true);
      expect(await opage.getByRole('button', { name: 'Audit log', exact: true }).isVisible()).toBe(true);
      // The master key is in no storage.
      const stored = await opage.evaluate(() => JSON.stringify({ ...(globalThis as any).sessionStorage }));
      expect(stored).not.toContain(MASTER_KEY);
      expect(oproblems).toEqual([]);
    });

    it('the operator creates a tenant, then disables it: its admin and its keys are refused', async () => {
      const name = `globex-${Date.now()}`;
      await opage.getByRole('button', { name: 'Add tenant' }).click();
      const dialog = opage.getByRole('dialog', { name: 'Add tenant' });
      await dialog.getByLabel('Tenant name').fill(name);
      await dialog.getByLabel('Token quota').fill('2000000');
      await dialog.getByLabel('Quota and budget reset').selectOption('monthly');
      await dialog.getByRole('button', { name: 'Add tenant' }).click();
      await dialog.waitFor({ state: 'hidden' });
      const r = tenantRow(name);
      await r.waitFor();
      expect(await r.locator('td[data-label="Token quota"]').innerText()).toBe('2,000,000 / month');
      expect(await r.locator('td[data-label="Status"]').innerText()).toBe('active');
      const listed = await request(t.url)
        .get('/api/v1/tenants?limit=100')
        .set('Authorization', `Bearer ${MASTER_KEY}`)
        .expect(200);
      const tenant = (listed.body.data as { id: string; name: string }[]).find((x) => x.name === name)!;
      const [created] = await auditOf('tenant.create', tenant.id);
      expect(created.after).toMatchObject({ name, quota_limit: 2000000, quota_period: 'monthly' });

      // An admin and a key in the new tenant work until it is disabled.
      expect(await r.locator('td[data-label="Admins"]').innerText()).toBe('none');
      const admin = await createUser(t.url, tenant.id, 'admin');
      secrets.push(admin.password);
      await createUser(t.url, tenant.id, 'member'); // not listed
      const withAdmin = await request(t.url)
        .get('/api/v1/tenants?limit=100')
        .set('Authorization', `Bearer ${MASTER_KEY}`)
        .expect(200);
      expect((withAdmin.body.data as { id: string }[]).find((x) => x.id === tenant.id)).toMatchObject({
        admins: [{ id: admin.id, email: admin.email, status: 'active' }],
        admin_count: 1,
      });
      await opage.getByRole('button', { name: 'Refresh' }).click();
      await eventually(async () => (await r.locator('td[data-label="Admins"]').innerText()) === admin.email);
      const key = await request(t.url)
        .post('/api/v1/api-keys')
        .set(auth(admin.token))
        .send({ name: 'globex key' })
        .expect(201);
      secrets.push(key.body.key);
      await request(t.url).get('/api/v1/me').set('X-API-Key', key.body.key).expect(200);

      await r.getByRole('button', { name: `Disable ${name}` }).click();
      await eventually(async () => (await r.locator('td[data-label="Status"]').innerText()) === 'disabled');
      await request(t.url)
        .post('/auth/login')
        .send({ email: admin.email, password: admin.password })
        .expect(401);
      await eventually(async () => {
        const res = await request(t.url).get('/api/v1/me').set('X-API-Key', key.body.key);
        return res.status === 401 || res.status === 403;
      });
      const [disabled] = await auditOf('tenant.update', tenant.id);
      expect(disabled.before).toEqual({ status: 'active' });
      expect(disabled.after).toEqual({ status: 'disabled' });
      await opage.mouse.move(0, 0);
      docsShot(await snap(opage, 'admin-tenants'), 'admin-tenants.png');

      // Enabled again from the page.
      await r.getByRole('button', { name: `Enable ${name}` }).click();
      await eventually(async () => (await r.locator('td[data-label="Status"]').innerText()) === 'active');
      await request(t.url)
        .post('/auth/login')
        .send({ email: admin.email, password: admin.password })
        .expect(200);
      await opage.context().close();
    });
  });

  describe('usage dashboard', () => {
    const ledger = async (from: string, to: string) => {
      const [sums] = (await t.app.get(DataSource).query(
        `SELECT count(*)::int AS requests, coalesce(sum(prompt_tokens + completion_tokens), 0)::int AS tokens,
                coalesce(sum(cost), 0)::float AS cost
           FROM usage_records WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3`,
        [a.tenantId, from, to],
      )) as { requests: number; tokens: number; cost: number }[];
      return sums;
    };
    const stat = (key: string) => page.locator(`#usage-totals [data-stat="${key}"] dd`).innerText();

    it("the dashboard's totals equal the ledger's for the range; the CSV parses and matches", async () => {
      const mk = async (token: string, name: string) =>
        (await request(t.url).post('/api/v1/api-keys').set(auth(token)).send({ name }).expect(201)).body as {
          id: string;
          key: string;
        };
      // The tenant's own limits (the operator's): the page shows its month against them.
      await request(t.url)
        .patch(`/api/v1/tenants/${a.tenantId}`)
        .set('Authorization', `Bearer ${MASTER_KEY}`)
        .send({ quota_limit: 1000000, max_budget: 10, quota_period: 'monthly', rate_limit_tpm: 50000 })
        .expect(200);
      const k1 = await mk(a.admin.token, 'Batch, nightly');
      const k2 = await mk(member.token, 'member-laptop');
      // A key with no room left this month: listed as refusing now.
      const tight = await request(t.url)
        .post('/api/v1/api-keys')
        .set(auth(a.admin.token))
        .send({ name: 'Tight quota', quota_limit: 5, quota_period: 'monthly' })
        .expect(201);
      secrets.push(tight.body.key);
      secrets.push(k1.key, k2.key);
      // Refused for its token quota (the prompt alone does not fit): a refusal of the tenant.
      const refused = await fetch(`${t.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${tight.body.key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({
          model: 'mock-gpt',
          messages: [{ role: 'user', content: 'too long for 5 tokens' }],
        }),
      });
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
        'tokens_quota_exceeded',
      );
      const chat = (key: string, content: string) =>
        fetch(`${t.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ model: 'mock-gpt', max_tokens: 40, messages: [{ role: 'user', content }] }),
        }).then((r) => expect(r.status).toBe(200));
      for (let i = 0; i < 3; i++) await chat(k1.key, `Nightly report ${i}`);
      for (let i = 0; i < 2; i++) await chat(k2.key, `Hello ${i}`);
      const day = new Date().toISOString().slice(0, 10);
      const from = new Date(Date.parse(`${day}T00:00:00Z`) - 6 * 86400000).toISOString();
      const to = new Date(Date.parse(`${day}T00:00:00Z`) + 86400000).toISOString();
      const sums = await eventually(async () => {
        const s = await ledger(from, to);
        return s.requests === 5 && s;
      });

      await page.getByRole('button', { name: 'Usage', exact: true }).click();
      await page.getByRole('heading', { name: 'Usage', exact: true }).waitFor();
      await page.getByLabel('From').fill(from.slice(0, 10));
      await page.getByLabel('To (included)').fill(day);
      await page.getByRole('button', { name: 'Show' }).click();
      await eventually(async () => (await stat('requests')) === '5');
      // The tenant's current period against its limits: the live counters, as the ledger has them.
      const limit = (key: string) => page.locator(`#usage-limits [data-limit="${key}"] dd`);
      expect(await page.locator('#usage-limits h2').innerText()).toBe("Your tenant's limits this month");
      expect(await limit('tokens').locator('.limit-text').innerText()).toBe(
        `${sums.tokens.toLocaleString('en-US')} / 1,000,000`,
      );
      expect(Number(await limit('tokens').locator('meter').getAttribute('value'))).toBe(sums.tokens);
      expect(await limit('spend').locator('.limit-text').innerText()).toMatch(/^\$0\.0000\d+ \/ \$10\.00$/);
      expect(await limit('tpm').innerText()).toBe('at most 50,000');
      // The refusal, under its reason (counts are written every LEDGER_FLUSH_MS: Show again until it is in).
      const refusals = page.locator('#usage-refusals');
      await eventually(
        async () => (await refusals.locator('h2').innerText()) === 'Refused requests: 1',
        () => page.getByRole('button', { name: 'Show' }).click(),
      );
      expect(await refusals.locator('table[data-group="Refusals"] tbody tr').allInnerTexts()).toEqual([
        'Token quota used up\t1',
      ]);
      const refusedBars = await refusals
        .locator('svg rect.segment')
        .evaluateAll((els) => els.map((e) => [(e as any).dataset.series, Number((e as any).dataset.value)]));
      expect(refusedBars).toEqual([['Token quota used up', 1]]);
      expect(await stat('total_tokens')).toBe(sums.tokens.toLocaleString('en-US'));
      const spend = await stat('cost_usd');
      expect(Number(spend.replace('$', ''))).toBeCloseTo(sums.cost, 2);
      const byUser = page.locator('table[data-group="User"] tbody th');
      expect((await byUser.allInnerTexts()).sort()).toEqual([a.admin.email, member.email].sort());
      expect(await page.locator('table[data-group="Key"] tbody th').first().innerText()).toBe(
        'Batch, nightly',
      );
      expect(await page.locator('table[data-group="Model"] tbody th').allInnerTexts()).toEqual(['mock-gpt']);
      const refusing = page.locator('#usage-exhausted');
      expect(await refusing.locator('caption').innerText()).toBe('Keys refusing requests now: 1');
      expect(await refusing.locator('tbody tr').innerText()).toMatch(
        /Tight quota\s+token quota used up\s+0 \/ 5/,
      );
      // Per day, stacked by model, then by user, then by key: the segments add up to the ledger.
      const segments = async (metric: string) => {
        const xs = await page
          .locator(`#usage-stacked svg[data-metric="${metric}"] rect.segment`)
          .evaluateAll((els) =>
            els.map((e) => ({ series: (e as any).dataset.series, value: Number((e as any).dataset.value) })),
          );
        const by: Record<string, number> = {};
        for (const x of xs) by[x.series] = (by[x.series] ?? 0) + x.value;
        return { total: xs.reduce((n, x) => n + x.value, 0), by };
      };
      const stackedBy = async (split: string, series: string[]) => {
        await page.getByLabel('Stack by').selectOption(split);
        await eventually(
          async () => (await page.locator('#usage-stacked').getAttribute('data-split')) === split,
        );
        const tokens = await segments('total_tokens');
        expect(tokens.total).toBe(sums.tokens);
        expect(Object.keys(tokens.by).sort()).toEqual(series.sort());
        expect((await segments('cost_usd')).total).toBeCloseTo(sums.cost, 6);
        expect((await page.locator('#usage-stacked .legend li').allInnerTexts()).sort()).toEqual(
          series.sort(),
        );
        return tokens.by;
      };
      await stackedBy('model', ['mock-gpt']);
      const byKey2 = await stackedBy('key', ['Batch, nightly', 'member-laptop']);
      const byUser2 = await stackedBy('user', [a.admin.email, member.email]);
      expect(byUser2[a.admin.email]).toBe(byKey2['Batch, nightly']);
      await page.mouse.move(0, 0);
      docsShot(await snap(page, 'admin-usage'), 'admin-usage.png');

      // CSV from the page (by key): parses, and its figures are the ledger's.
      await page.getByLabel('CSV by').selectOption('key');
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Download CSV' }).click(),
      ]);
      expect(download.suggestedFilename()).toMatch(/^usage-key-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv$/);
      const rows = parseCsv(readFileSync((await download.path())!, 'utf8'));
      expect(rows.map((r) => r.key_name).sort()).toEqual(['Batch, nightly', 'member-laptop']);
      expect(rows.reduce((n, r) => n + Number(r.requests), 0)).toBe(5);
      expect(rows.reduce((n, r) => n + Number(r.total_tokens), 0)).toBe(sums.tokens);
      expect(rows.reduce((n, r) => n + Number(r.cost_usd), 0)).toBeCloseTo(sums.cost, 6);

      // The API's CSV is the JSON report's groups.
      const q = { from, to, group_by: 'model' };
      const json = await request(t.url).get('/api/v1/usage').query(q).set(auth(a.admin.token)).expect(200);
      const csv = await request(t.url)
        .get('/api/v1/usage')
        .query({ ...q, format: 'csv' })
        .set(auth(a.admin.token))
        .expect(200)
        .expect('content-type', /^text\/csv/)
        .expect('content-disposition', /attachment; filename="usage-model-/);
      const parsed = parseCsv(csv.text);
      expect(parsed).toEqual(
        (json.body.data as Record<string, unknown>[]).map((r) =>
          Object.fromEntries(Object.entries(r).map(([k, v]) => [k, String(v)])),
        ),
      );
      await request(t.url).get('/api/v1/usage').query({ format: 'xml' }).set(auth(a.admin.token)).expect(400);

      // Prompt-cache figures (Anthropic cache writes and reads, OpenAI cached_tokens): the ledger's.
      await t.app.get(DataSource).query(
        `INSERT INTO usage_records (id, tenant_id, user_id, api_key_id, model, provider, prompt_tokens,
                                    completion_tokens, cache_write_tokens, cache_read_tokens, status)
         VALUES (gen_random_uuid(), $1, $2, $3, 'claude-x', 'anthropic', 30, 5, 7, 11, 'success')`,
        [a.tenantId, a.admin.id, k1.id],
      );
      await page.getByRole('button', { name: 'Show' }).click();
      await eventually(async () => (await stat('cache_read_tokens')) === '11');
      expect(await stat('cache_write_tokens')).toBe('7');
      expect(await stat('requests')).toBe('6');

      // A range with no usage shows zeros.
      const yesterday = new Date(Date.parse(from) - 86400000).toISOString().slice(0, 10);
      await page.getByLabel('From').fill(yesterday);
      await page.getByLabel('To (included)').fill(yesterday);
      await page.getByRole('button', { name: 'Show' }).click();
      await eventually(async () => (await stat('requests')) === '0');
      expect(problems).toEqual([]);
    });
  });
});
