import { hash, randomBytes } from 'node:crypto';

/**
 * Virtual key format (design section 3, the GitHub token idea):
 *   sk- + 32 base62 characters of randomness (32 * log2(62) = 190.5 bits) + 6 base62
 *   characters of CRC32 over everything before them.
 * The checksum lets the guard refuse typos and garbage offline, and lets secret
 * scanners recognise the keys.
 */
export const KEY_PREFIX = 'sk-';
export const BODY_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
export const KEY_LENGTH = KEY_PREFIX.length + BODY_LENGTH + CHECKSUM_LENGTH;
export const DISPLAY_PREFIX_LENGTH = 12;

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const CURRENT_FORMAT = new RegExp(`^${KEY_PREFIX}[0-9A-Za-z]{${BODY_LENGTH + CHECKSUM_LENGTH}}$`);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(input: string): number {
  let crc = 0xffffffff;
  for (const byte of Buffer.from(input, 'utf8')) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** CRC32 as 6 base62 digits (62^6 > 2^32, left-padded with '0'). */
export function checksum(input: string): string {
  let n = crc32(input);
  let out = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/** Uniform base62 from crypto randomness (rejection sampling: no modulo bias). */
function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < 248) out += ALPHABET[b % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

export function generateKey(): string {
  const head = KEY_PREFIX + randomBase62(BODY_LENGTH);
  return head + checksum(head);
}

/** Has the shape of a key this gateway issues (whether or not its checksum holds). */
export function isCurrentFormat(key: string): boolean {
  return CURRENT_FORMAT.test(key);
}

/** A current-format key whose checksum holds. */
export function hasValidChecksum(key: string): boolean {
  if (!isCurrentFormat(key)) return false;
  const head = key.slice(0, -CHECKSUM_LENGTH);
  return checksum(head) === key.slice(-CHECKSUM_LENGTH);
}

/** What the key_prefix column holds and the UI shows. */
export function displayPrefix(key: string): string {
  return key.slice(0, DISPLAY_PREFIX_LENGTH);
}

/** key_lookup_hash: hex sha256 of the whole key (one-shot `hash`: a quarter of a Hash object's cost, every request). */
export function lookupHash(key: string): string {
  return hash('sha256', key, 'hex');
}
