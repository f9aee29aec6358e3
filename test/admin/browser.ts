import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';
import type { UserSession } from '../harness/factories';

/** Debian's Chromium (`.ci/run` installs it); flags from ../shared/STACK-NOTES.md. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** Where screenshots of a run go (ADMIN_SCREENSHOTS=dir, default a temp dir). */
export const SCREENSHOT_DIR = process.env.ADMIN_SCREENSHOTS ?? join(tmpdir(), 'gw-admin-screenshots');
mkdirSync(SCREENSHOT_DIR, { recursive: true });

export async function snap(page: Page, name: string, fullPage = true): Promise<string> {
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage });
  return path;
}

/** Collects console errors, page errors and CSP violations, so a test can assert there were none. */
export function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of (401|400|403|404|409)/.test(m.text()))
      problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  return problems;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retries `check` (after `poke`, e.g. a click on Refresh) until it holds or the time is up. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false>,
  poke: () => Promise<unknown> = async () => undefined,
  ms = 15000,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(250);
    await poke();
  }
}

/** Signs in on /admin with the login form and waits for the keys page. */
export async function signIn(page: Page, url: string, user: UserSession): Promise<void> {
  await page.goto(`${url}/admin`);
  await page.getByLabel('Email', { exact: true }).fill(user.email);
  await page.getByLabel('Password', { exact: true }).fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'API Keys' }).waitFor();
}
