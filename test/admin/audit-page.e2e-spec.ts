import request from 'supertest';
import { copyFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { DataSource } from 'typeorm';
import { createTestApp, MASTER_KEY, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, createUser, TenantSession, UserSession } from '../harness/factories';
import { launchChromium, signIn, snap, watchProblems } from './browser';

const entry = (page: Page, action: string) => page.locator(`#audit-body tr[data-action="${action}"]`);

/**
 * The audit log page in Chromium on the real gateway: an admin edits a key (limits over the
 * API, regenerate in the page) and finds both in the audit log with before/after, who and
 * from where, and no secret anywhere on the page; a member has no audit tab and gets 403.
 */
describe('audit log page in Chromium (real gateway, real PostgreSQL)', () => {
  let t: TestApp;
  let a: TenantSession;
  let member: UserSession;
  let browser: Browser;
  let page: Page;
  let problems: string[];
  const secrets: string[] = [MASTER_KEY];

  beforeAll(async () => {
    t = await createTestApp({ env: { AUTH_FAILURE_LIMIT: '1000' } });
    a = await createTenantWithAdmin(t.url, 'audit-corp');
    member = await createUser(t.url, a.tenantId, 'member');
    secrets.push(a.admin.password, a.admin.token, member.password, member.token);
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
    problems = watchProblems(page);
  });

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it('an admin edits a key; the audit page shows the change with before/after and no secret', async () => {
    const created = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'Billing service', quota_limit: 1000, allowed_models: ['mock-gpt'] })
      .expect(201);
    secrets.push(created.body.key);
    await request(t.url)
      .patch(`/api/v1/api-keys/${created.body.id}`)
      .set(auth(a.admin.token))
      .send({ quota_limit: 5000, rate_limit_rpm: 120, allowed_models: ['mock-gpt', 'gpt-4o-mini'] })
      .expect(200);

    await signIn(page, t.url, a.admin);
    // Regenerate in the page: the new key is shown once, and never reaches the audit log.
    await page.getByRole('button', { name: 'Regenerate Billing service' }).click();
    await page
      .getByRole('dialog', { name: 'Regenerate Billing service' })
      .getByRole('button', { name: 'Regenerate' })
      .click();
    const secret = page.getByRole('dialog', { name: 'Your new key' });
    await secret.waitFor();
    secrets.push(await secret.locator('#secret-value').inputValue());
    await page.keyboard.press('Escape');

    await page.getByRole('button', { name: 'Audit log' }).click();
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
    await entry(page, 'api_key.regenerate').waitFor();
    const changed = entry(page, 'api_key.update');
    expect(await changed.locator('td[data-label="Who"]').innerText()).toBe(a.admin.email);
    expect(await changed.locator('td[data-label="Action"]').innerText()).toBe('Key changed');
    expect(await changed.locator('td[data-label="On"]').innerText()).toContain('Billing service');
    expect((await changed.locator('td[data-label="Change"] li').allInnerTexts()).sort()).toEqual([
      'allowed_models: mock-gpt → mock-gpt, gpt-4o-mini',
      'quota_limit: 1000 → 5000',
      'rate_limit_rpm: — → 120',
    ]);
    expect(await changed.locator('td[data-label="Request"]').innerText()).toContain('127.0.0.1');
    const regen = await entry(page, 'api_key.regenerate').locator('td[data-label="Change"]').innerText();
    expect(regen).toMatch(/key_prefix: sk-\w{9} → sk-\w{9}/);
    await entry(page, 'api_key.create').waitFor();
    await entry(page, 'auth.login').first().waitFor();

    // No key, password, token or hash on the page, and none in what the API sent it.
    const html = await page.content();
    for (const s of secrets) expect(html).not.toContain(s);
    expect(html).not.toMatch(/\$2[aby]\$|key_hash|lookup_hash|password_hash/);
    const raw: { row: string }[] = await t.app
      .get(DataSource)
      .query(`SELECT row_to_json(a)::text AS row FROM audit_log a`);
    for (const s of secrets) expect(raw.map((r) => r.row).join('\n')).not.toContain(s);

    // Filtering to API keys drops the sign-ins.
    await page.getByLabel('Show').selectOption({ label: 'API keys' });
    await page.waitForFunction(
      () => !(globalThis as any).document.querySelector('#audit-body tr[data-action^="auth."]'),
    );
    expect(await page.locator('#audit-body tr').count()).toBe(3);
    await page.mouse.move(0, 0);
    const shot = await snap(page, 'admin-audit');
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1')
      copyFileSync(shot, resolve(__dirname, '../../docs/admin-audit.png'));
    expect(problems).toEqual([]);
  });

  it('a member has no audit tab, and the API refuses them', async () => {
    const mpage = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
    await signIn(mpage, t.url, member);
    expect(await mpage.locator('#views-nav').isHidden()).toBe(true);
    expect(await mpage.getByRole('button', { name: 'Audit log' }).count()).toBe(0);
    await request(t.url).get('/api/v1/audit-log').set(auth(member.token)).expect(403);
  });
});
