import {
  afterFailure,
  afterRetryAfter,
  decodeHealth,
  encodeHealth,
  stateOf,
  withProbe,
} from './deployment-health';

const policy = { threshold: 3, windowMs: 1000, cooldownMs: 500 };

describe('deployment health transitions', () => {
  it('N failures within the window start a cooldown; older failures fall out of the window', () => {
    let r = afterFailure(undefined, 0, policy);
    r = afterFailure(r, 100, policy);
    expect(stateOf(r, 100)).toBe('healthy');
    r = afterFailure(r, 1200, policy); // the window restarted: 1 failure
    expect(r.failures).toBe(1);
    r = afterFailure(afterFailure(r, 1300, policy), 1400, policy);
    expect(stateOf(r, 1400)).toBe('cooldown');
    expect(r).toMatchObject({ until: 1900, reason: 'failures' });
    // failures of requests that started before the cooldown are not counted
    expect(afterFailure(r, 1500, policy)).toEqual(r);
  });

  it('after the cooldown one probe: a second is refused; a failed probe cools down again at once', () => {
    const r = afterFailure(afterFailure(afterFailure(undefined, 0, policy), 0, policy), 0, policy);
    expect(withProbe(r, 400, 100)).toBeNull();
    expect(stateOf(r, 500)).toBe('probe');
    const probing = withProbe(r, 500, 100)!;
    expect(withProbe(probing, 550, 100)).toBeNull();
    expect(withProbe(probing, 601, 100)).not.toBeNull(); // the lease expired: another may probe
    const again = afterFailure(probing, 560, policy);
    expect(stateOf(again, 560)).toBe('cooldown');
    expect(again.until).toBe(1060);
  });

  it('a failure of an attempt that started before the rest ended is not counted, even when it ends after', () => {
    const r = afterFailure(afterFailure(afterFailure(undefined, 0, policy), 0, policy), 0, policy);
    expect(r.until).toBe(500);
    // a request that hung since before the cooldown times out after it: the deployment may still probe
    const stale = afterFailure(r, 4000, policy, 100);
    expect(stale).toEqual(r);
    expect(stateOf(stale, 4000)).toBe('probe');
    // an attempt started after the rest (the probe, or a request once it is back) counts
    expect(stateOf(afterFailure(r, 4000, policy, 600), 4000)).toBe('cooldown');
  });

  it('Retry-After rests it at least that long; a shorter one does not shorten a cooldown', () => {
    const r = afterRetryAfter(undefined, 1000, 2000);
    expect(r).toMatchObject({ until: 3000, reason: 'retry_after' });
    expect(afterRetryAfter(r, 1500, 100).until).toBe(3000);
    expect(stateOf(r, 3000)).toBe('probe');
  });

  it('encodes for Redis and back', () => {
    const r = afterRetryAfter(undefined, 1795939582416, 2000);
    expect(decodeHealth(encodeHealth(r))).toEqual(r);
    expect(decodeHealth('garbage')).toBeUndefined();
  });
});
