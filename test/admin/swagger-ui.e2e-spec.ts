import request from 'supertest';
import type { Browser } from 'playwright-core';
import { createTestApp, TestApp } from '../harness/app';
import { launchChromium, snap, watchProblems } from './browser';

describe('Swagger UI at /docs in Chromium', () => {
  let t: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    t = await createTestApp();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it('renders every operation from local assets and offers both security schemes', async () => {
    const doc = (await request(t.url).get('/docs-json').expect(200)).body as {
      paths: Record<string, Record<string, unknown>>;
    };
    const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems = watchProblems(page);
    const external: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(t.url) && !r.url().startsWith('data:')) external.push(r.url());
    });
    await page.goto(`${t.url}/docs`);
    await page.locator('.opblock').first().waitFor();
    expect(await page.locator('.opblock').count()).toBe(operations);
    expect(await page.locator('.info .title').innerText()).toContain('llm-gateway');

    // One operation opened: its error responses carry the envelope example.
    await page.locator('#operations-api-keys-ApiKeysController_get .opblock-summary').click();
    const responses = page.locator('#operations-api-keys-ApiKeysController_get .responses-table');
    await responses.first().waitFor();
    const text = await responses.first().innerText();
    for (const code of ['200', '400', '401', '403', '404']) expect(text).toContain(code);
    expect(text).toContain('"error"');

    await page.getByRole('button', { name: 'Authorize' }).first().click();
    const modal = page.locator('.modal-ux');
    await modal.waitFor();
    const auth = await modal.innerText();
    expect(auth).toContain('bearer');
    expect(auth).toContain('api-key');
    expect(auth).toContain('X-API-Key');
    await snap(page, 'swagger-authorize', false);

    expect(external).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  });
});
