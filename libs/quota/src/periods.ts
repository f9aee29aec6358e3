import type { QuotaPeriod } from './quota.types';

/** The bucket a reset period puts `now` in: counter-name suffix and [start, end) in epoch ms. */
export interface PeriodWindow {
  period: QuotaPeriod;
  /** `2026-11-22` (daily), `2026-11` (monthly), '' (none). */
  suffix: string;
  /** null for 'none' (all time). */
  start: number | null;
  end: number | null;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Throws a one-line error for an unknown IANA zone (checked once at start). */
export function assertTimeZone(timeZone: string): void {
  try {
    formatter(timeZone);
  } catch {
    throw new Error(`QUOTA_TIMEZONE "${timeZone}" is not an IANA time zone (e.g. UTC, Europe/Berlin)`);
  }
}

interface LocalParts {
  y: number;
  m: number;
  d: number;
  h: number;
  min: number;
  s: number;
}

function localParts(t: number, timeZone: string): LocalParts {
  const p: Record<string, number> = {};
  for (const part of formatter(timeZone).formatToParts(new Date(t))) {
    if (part.type !== 'literal') p[part.type] = Number(part.value);
  }
  return { y: p.year, m: p.month, d: p.day, h: p.hour, min: p.minute, s: p.second };
}

/** Offset of the zone from UTC at instant t, in ms (local = utc + offset). */
function offsetAt(t: number, timeZone: string): number {
  const l = localParts(t, timeZone);
  const asUtc = Date.UTC(l.y, l.m - 1, l.d, l.h, l.min, l.s);
  return asUtc - Math.floor(t / 1000) * 1000;
}

/** The instant local midnight starts the day y-m-d (month 1-based; overflow normalises). */
function localMidnight(y: number, m: number, d: number, timeZone: string): number {
  const guess = Date.UTC(y, m - 1, d);
  const first = guess - offsetAt(guess, timeZone);
  const second = guess - offsetAt(first, timeZone);
  // A zone that skips midnight (DST at 00:00) has no local 00:00: the day starts at the jump.
  return localParts(second, timeZone).d === localParts(guess, 'UTC').d ? second : first;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/**
 * The last window computed per period and zone, keyed by the local date it was computed
 * for: a window depends only on (period, zone, local year, month[, day]), so the hot path
 * (every admit) pays no formatToParts while `now` is inside the last window, one when not.
 */
const lastWindows = new Map<string, { date: string; window: PeriodWindow }>();

export function periodWindow(period: QuotaPeriod, now: number, timeZone = 'UTC'): PeriodWindow {
  if (period === 'none') return { period, suffix: '', start: null, end: null };
  const slot = `${period}|${timeZone}`;
  const last = lastWindows.get(slot);
  // [start, end) holds exactly the instants of its local date: inside it, no formatToParts at all.
  if (last && now >= last.window.start! && now < last.window.end!) return { ...last.window };
  const l = localParts(now, timeZone);
  const date = period === 'daily' ? `${l.y}-${l.m}-${l.d}` : `${l.y}-${l.m}`;
  if (last?.date === date) return { ...last.window };
  const window: PeriodWindow =
    period === 'daily'
      ? {
          period,
          suffix: `${l.y}-${pad(l.m)}-${pad(l.d)}`,
          start: localMidnight(l.y, l.m, l.d, timeZone),
          end: localMidnight(l.y, l.m, l.d + 1, timeZone),
        }
      : {
          period,
          suffix: `${l.y}-${pad(l.m)}`,
          start: localMidnight(l.y, l.m, 1, timeZone),
          end: localMidnight(l.y, l.m + 1, 1, timeZone),
        };
  lastWindows.set(slot, { date, window });
  return { ...window };
}

/** The local calendar day of t (`YYYY-MM-DD`), for group_by=day. */
export function localDay(t: number, timeZone = 'UTC'): string {
  const l = localParts(t, timeZone);
  return `${l.y}-${pad(l.m)}-${pad(l.d)}`;
}
