import { Injectable } from '@nestjs/common';

/**
 * Time source of the quota lib (reset periods, reservation expiry, rpm windows). Tests
 * override the provider with a settable clock. Instances sharing Redis must keep their
 * clocks in step (NTP): the scripts use the caller's time, so skew shifts window edges.
 */
@Injectable()
export class QuotaClock {
  now(): number {
    return Date.now();
  }
}

/** A clock tests move by hand. */
export class ManualClock extends QuotaClock {
  constructor(private t: number = Date.UTC(2026, 0, 1)) {
    super();
  }
  override now(): number {
    return this.t;
  }
  set(t: number | Date): void {
    this.t = typeof t === 'number' ? t : t.getTime();
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
