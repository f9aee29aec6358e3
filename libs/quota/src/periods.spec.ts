import { assertTimeZone, localDay, periodWindow } from './periods';

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

describe('periodWindow', () => {
  const now = Date.parse('2026-11-22T15:30:00Z');

  it('none: no bucket, no bounds', () => {
    expect(periodWindow('none', now)).toEqual({ period: 'none', suffix: '', start: null, end: null });
  });

  it('UTC daily and monthly', () => {
    const d = periodWindow('daily', now, 'UTC');
    expect(d.suffix).toBe('2026-11-22');
    expect(iso(d.start)).toBe('2026-11-22T00:00:00.000Z');
    expect(iso(d.end)).toBe('2026-11-23T00:00:00.000Z');
    const m = periodWindow('monthly', now, 'UTC');
    expect(m.suffix).toBe('2026-11');
    expect(iso(m.start)).toBe('2026-11-01T00:00:00.000Z');
    expect(iso(m.end)).toBe('2026-12-01T00:00:00.000Z');
  });

  it('December rolls into the next year', () => {
    const m = periodWindow('monthly', Date.parse('2026-12-31T23:59:59Z'), 'UTC');
    expect(m.suffix).toBe('2026-12');
    expect(iso(m.end)).toBe('2027-01-01T00:00:00.000Z');
  });

  it('the last millisecond of a day is in it; the next is not', () => {
    const end = Date.parse('2026-11-23T00:00:00Z');
    expect(periodWindow('daily', end - 1, 'UTC').suffix).toBe('2026-11-22');
    expect(periodWindow('daily', end, 'UTC').suffix).toBe('2026-11-23');
  });

  it('the last window is reused only inside its bounds (the instant before its start is the day before)', () => {
    const start = Date.parse('2026-11-20T00:00:00Z');
    expect(periodWindow('daily', start + 5000, 'UTC').suffix).toBe('2026-11-20');
    expect(periodWindow('daily', start, 'UTC').suffix).toBe('2026-11-20');
    expect(periodWindow('daily', start - 1, 'UTC').suffix).toBe('2026-11-19');
    expect(periodWindow('daily', start + 86_400_000, 'UTC').suffix).toBe('2026-11-21');
  });

  it('a zone ahead of UTC: local day differs from the UTC day', () => {
    // 23:30 UTC on the 22nd is 08:30 on the 23rd in Tokyo.
    const d = periodWindow('daily', Date.parse('2026-11-22T23:30:00Z'), 'Asia/Tokyo');
    expect(d.suffix).toBe('2026-11-23');
    expect(iso(d.start)).toBe('2026-11-22T15:00:00.000Z');
    expect(iso(d.end)).toBe('2026-11-23T15:00:00.000Z');
  });

  it('half-hour offsets (Asia/Kolkata, +05:30)', () => {
    const m = periodWindow('monthly', Date.parse('2026-10-31T20:00:00Z'), 'Asia/Kolkata');
    expect(m.suffix).toBe('2026-11');
    expect(iso(m.start)).toBe('2026-10-31T18:30:00.000Z');
  });

  it('DST: the day Berlin falls back has 25 hours, the day it springs forward 23', () => {
    const fall = periodWindow('daily', Date.parse('2026-10-25T12:00:00Z'), 'Europe/Berlin');
    expect(iso(fall.start)).toBe('2026-10-24T22:00:00.000Z');
    expect(iso(fall.end)).toBe('2026-10-25T23:00:00.000Z');
    expect(fall.end! - fall.start!).toBe(25 * 3600_000);
    const spring = periodWindow('daily', Date.parse('2026-03-29T12:00:00Z'), 'Europe/Berlin');
    expect(spring.end! - spring.start!).toBe(23 * 3600_000);
  });

  it('New York: a month that crosses the DST change', () => {
    const m = periodWindow('monthly', Date.parse('2026-11-15T12:00:00Z'), 'America/New_York');
    expect(iso(m.start)).toBe('2026-11-01T04:00:00.000Z'); // EDT, -4
    expect(iso(m.end)).toBe('2026-12-01T05:00:00.000Z'); // EST, -5
  });

  it('every instant of a day maps into [start, end)', () => {
    for (const tz of [
      'UTC',
      'Europe/Berlin',
      'America/Los_Angeles',
      'Australia/Lord_Howe',
      'Pacific/Chatham',
    ]) {
      for (
        let t = Date.parse('2026-03-27T00:00:00Z');
        t < Date.parse('2026-04-07T00:00:00Z');
        t += 37 * 60_000
      ) {
        const w = periodWindow('daily', t, tz);
        expect(w.start! <= t && t < w.end!).toBe(true);
        expect(localDay(w.start!, tz)).toBe(w.suffix);
        expect(localDay(w.end! - 1, tz)).toBe(w.suffix);
      }
    }
  });

  it('rejects an unknown zone with one line', () => {
    expect(() => assertTimeZone('Mars/Olympus')).toThrow(
      /^QUOTA_TIMEZONE "Mars\/Olympus" is not an IANA time zone/,
    );
    expect(() => assertTimeZone('Europe/Berlin')).not.toThrow();
  });
});
