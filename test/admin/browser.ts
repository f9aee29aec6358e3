import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';

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
