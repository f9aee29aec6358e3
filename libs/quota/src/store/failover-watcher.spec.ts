import { keySlot } from './failover-watcher';

describe('keySlot (Redis Cluster CRC16)', () => {
  it('matches Redis for plain keys and hashes only the {tag}', () => {
    expect(keySlot('foo')).toBe(12182); // redis-cli CLUSTER KEYSLOT foo
    expect(keySlot('123456789')).toBe(12739); // CRC16/XMODEM check value 0x31C3
    expect(keySlot('quota-meta:{abc}:rebuilt')).toBe(keySlot('abc'));
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
    expect(keySlot('foo{}{bar}')).toBe(keySlot('foo{}{bar}')); // empty tag: the whole key
    expect(keySlot('foo{}{bar}')).not.toBe(keySlot('bar'));
  });
});
