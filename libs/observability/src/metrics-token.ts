import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time: both sides are hashed to equal length first, so neither length nor content leaks. */
export function tokenMatches(expected: string, authorization: string | undefined): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  const given = m?.[1] ?? '';
  return timingSafeEqual(digest(expected), digest(given)) && given.length > 0;
}
