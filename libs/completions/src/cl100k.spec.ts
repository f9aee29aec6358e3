import { Tiktoken } from 'js-tiktoken/lite';
import { Cl100k } from './cl100k';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const ranks = require('js-tiktoken/ranks/cl100k_base') as ConstructorParameters<typeof Cl100k>[0];

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const POOL = [
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
  ...'     \n\n\r\t',
  ...`.,;:!?'"()[]{}<>/\\|-_=+*&^%$#@~\``,
  ...'éèàüößçñ',
  'e\u0301',
  ...'日本語の文章中文한국어',
  '😀',
  '👍🏽',
  '\ud800', // a lone surrogate
  "'s",
  "'ll",
  '<|endoftext|>',
  '    ',
  '1234567',
];

const FIXED = [
  '',
  'Say hello to the benchmark.',
  'Hello, world! How are you today?\n\nI am fine.',
  '<|endoftext|> and <|fim_prefix|> are plain text here',
  'function f(x) {\n  return x * 2; // doubled\n}\n',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'SGVsbG8gd29ybGQhIFRoaXMgaXMgYmFzZTY0IGVuY29kZWQgdGV4dC4=',
  '日本語のテキストと English mixed 😀 text',
  'naïve café — “quotes” … ellipsis',
  '   leading and trailing spaces   ',
  '\r\n\r\n\t\t tabs and CRLF \r\n',
  'https://example.com/path?query=1&other=two#fragment',
];

describe('Cl100k', () => {
  const ours = new Cl100k(ranks);
  const theirs = new Tiktoken(ranks);

  it('encodes exactly as js-tiktoken does (fixed texts and 2,000 random ones)', () => {
    const rnd = random(18);
    const texts = [...FIXED];
    for (let i = 0; i < 2000; i++) {
      let t = '';
      const n = 1 + Math.floor(rnd() * 60);
      for (let j = 0; j < n; j++) t += POOL[Math.floor(rnd() * POOL.length)];
      texts.push(t);
    }
    for (const text of texts) expect([text, ours.encode(text)]).toEqual([text, theirs.encode(text, [], [])]);
  });

  it('decodes exactly as js-tiktoken does, a cut inside a character included', () => {
    const rnd = random(7);
    for (const text of FIXED) {
      const tokens = theirs.encode(text, [], []);
      expect(ours.decode(tokens)).toBe(text);
      const cut = tokens.slice(0, Math.floor(rnd() * (tokens.length + 1)));
      expect(ours.decode(cut)).toBe(theirs.decode(cut));
    }
    expect(ours.decode([100257, 9906])).toBe(theirs.decode([100257, 9906]));
  });
});
