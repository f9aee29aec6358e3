/**
 * npm run bench:estimator: the prompt estimate's cost on the hot path (issue 12). Times
 * `countPromptTokens` of libs/completions/src/tokens.ts on a few prompt shapes, against a
 * baseline in the same run: the same prompts' JSON.stringify (what any gateway pays to look
 * at a body). With BENCH_BEFORE=<file>, the same is measured for another copy of tokens.ts
 * (e.g. the previous version, `git show <rev>:libs/completions/src/tokens.ts`) and both are
 * printed, with the reserved tokens of each against a full count. Figures: docs/BENCHMARKS.md.
 */
import { resolve } from 'node:path';
import { countPromptTokens, encodeTokens } from '../libs/completions/src/tokens';
import type { ChatRequest } from '../libs/completions/src/chat/openai-types';

type Counter = (req: Pick<ChatRequest, 'messages' | 'tools'>) => number;

const english = 'The quick brown fox jumps over the lazy dog while the build runs its tests. ';
const SENTENCES = [
  '我们今天讨论的是人工智能在日常生活中的应用以及它对社会的影响',
  '这个系统需要在多个实例之间保持一致的配额计数',
];
const cjk = (n: number) => {
  let s = '';
  for (let i = 0; s.length < n; i++) s += (i ? '。' : '') + SENTENCES[i % 2];
  return s;
};
const shapes: { name: string; req: Pick<ChatRequest, 'messages' | 'tools'>; iter: number }[] = [
  {
    name: 'chat, 2 short messages',
    req: {
      messages: [
        { role: 'system', content: 'You are helpful.' },
        { role: 'user', content: 'What is the capital of France?' },
      ],
    },
    iter: 5000,
  },
  {
    name: 'chat, 4 KB of English',
    req: { messages: [{ role: 'user', content: english.repeat(55) }] },
    iter: 500,
  },
  {
    name: 'agent, 100 KB of English in 20 messages',
    req: {
      messages: Array.from({ length: 20 }, (_, i) => ({
        role: i % 2 ? ('assistant' as const) : ('user' as const),
        content: english.repeat(67),
      })),
    },
    iter: 20,
  },
  { name: 'CJK, 30k characters', req: { messages: [{ role: 'user', content: cjk(30_000) }] }, iter: 2 },
];

function time(fn: () => unknown, iter: number): number {
  for (let i = 0; i < Math.min(iter, 50); i++) fn(); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iter; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1e3 / iter; // µs per call
}

function main(): void {
  const before = process.env.BENCH_BEFORE
    ? // eslint-disable-next-line @typescript-eslint/no-require-imports
      (require(resolve(process.env.BENCH_BEFORE)) as { countPromptTokens: Counter }).countPromptTokens
    : undefined;
  const rows = [
    '| prompt | JSON.stringify (µs) | estimate (µs) | ratio | before (µs) | before ratio | reserved / full count | before: reserved / full count |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const s of shapes) {
    const base = time(() => JSON.stringify(s.req), s.iter);
    const now = time(() => countPromptTokens(s.req), s.iter);
    // a full cl100k count as OpenAI frames a chat (3 per message, 3 priming): English in one
    // piece; CJK sentence by sentence (cut before "。", each a whole pre-token: counts add up)
    const full = s.req.messages.reduce((n, m) => {
      const text = m.content as string;
      const pieces = s.name.startsWith('CJK') ? text.split(/(?=。)/) : [text];
      return n + 3 + encodeTokens(m.role).length + pieces.reduce((k, p) => k + encodeTokens(p).length, 0);
    }, 3);
    const old = before ? time(() => before(s.req), s.iter) : NaN;
    rows.push(
      `| ${s.name} | ${base.toFixed(1)} | ${now.toFixed(1)} | ${(now / base).toFixed(1)}x | ${before ? old.toFixed(1) : '-'} | ${before ? `${(old / base).toFixed(1)}x` : '-'} | ${(countPromptTokens(s.req) / full).toFixed(2)} | ${before ? (before(s.req) / full).toFixed(2) : '-'} |`,
    );
  }
  console.log(rows.join('\n'));
}

main();
