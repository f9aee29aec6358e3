import {
  checksum,
  crc32,
  displayPrefix,
  generateKey,
  hasValidChecksum,
  isCurrentFormat,
  KEY_LENGTH,
  lookupHash,
} from './key-format';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

describe('key format', () => {
  it('crc32 matches the standard check value', () => {
    expect(crc32('123456789')).toBe(0xcbf43926);
    expect(crc32('')).toBe(0);
  });

  it('generated keys have the format and verify', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const k = generateKey();
      expect(k).toHaveLength(KEY_LENGTH);
      expect(isCurrentFormat(k)).toBe(true);
      expect(hasValidChecksum(k)).toBe(true);
      keys.add(k);
    }
    expect(keys.size).toBe(2000);
  });

  it('the body is uniform-ish base62 (every symbol appears)', () => {
    const seen = new Set(Array.from({ length: 200 }, generateKey).join('').slice(3));
    for (const c of ALPHABET) expect(seen.has(c)).toBe(true);
  });

  it('refuses every single-character substitution of a corpus of keys', () => {
    let tried = 0;
    for (let n = 0; n < 20; n++) {
      const k = generateKey();
      for (let i = 3; i < k.length; i++) {
        for (const c of ALPHABET) {
          if (c === k[i]) continue;
          const typo = k.slice(0, i) + c + k.slice(i + 1);
          expect(hasValidChecksum(typo)).toBe(false);
          tried++;
        }
      }
    }
    expect(tried).toBe(20 * 38 * 61);
  });

  it('refuses every adjacent transposition (that changes the key)', () => {
    let tried = 0;
    for (let n = 0; n < 200; n++) {
      const k = generateKey();
      for (let i = 3; i < k.length - 1; i++) {
        if (k[i] === k[i + 1]) continue;
        const swapped = k.slice(0, i) + k[i + 1] + k[i] + k.slice(i + 2);
        expect(hasValidChecksum(swapped)).toBe(false);
        tried++;
      }
    }
    expect(tried).toBeGreaterThan(7000);
  });

  it('refuses truncations, extensions and garbage', () => {
    const k = generateKey();
    for (const bad of [
      k.slice(0, -1),
      k + 'a',
      'sk-',
      '',
      'sk-' + 'a'.repeat(38),
      k.replace('sk-', 'sx-'),
      k.toUpperCase(),
    ]) {
      expect(hasValidChecksum(bad)).toBe(false);
    }
  });

  it('checksum is 6 base62 characters; prefix and lookup hash', () => {
    expect(checksum('sk-abc')).toMatch(/^[0-9A-Za-z]{6}$/);
    const k = generateKey();
    expect(displayPrefix(k)).toBe(k.slice(0, 12));
    expect(lookupHash(k)).toMatch(/^[0-9a-f]{64}$/);
    expect(lookupHash(k)).not.toBe(lookupHash(k + 'x'));
  });
});
