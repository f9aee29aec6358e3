/**
 * Jest reporter of `npm run test:reliability`: turns the figures each spec left in
 * REL_FIGURES_DIR (see figures.ts) and the test results into docs/RELIABILITY.md, so the
 * document always shows the last full run. A partial run (a filtered subset of the specs)
 * writes to REL_FIGURES_DIR/RELIABILITY.md instead and says so.
 */
const { existsSync, readdirSync, readFileSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const { join, resolve, relative } = require('node:path');
const { execSync } = require('node:child_process');

const ROOT = resolve(__dirname, '../..');
const SPECS = readdirSync(__dirname).filter((f) => f.endsWith('.rel-spec.ts'));

const esc = (s) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');
const table = (head, rows) =>
  [
    `| ${head.map(esc).join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');

function machine() {
  const cpus = os.cpus();
  let commit = '';
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    commit = 'unknown';
  }
  let redis = '';
  try {
    redis = execSync('redis-server --version', { encoding: 'utf8' }).match(/v=(\S+)/)?.[1] ?? '';
  } catch {
    redis = 'not found';
  }
  return [
    ['CPU', `${cpus.length} x ${cpus[0]?.model ?? 'unknown'}`],
    ['Memory', `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`],
    ['OS', `${os.type()} ${os.release()} (${os.arch()})`],
    ['Node', process.version],
    ['Redis', redis],
    ['Commit', commit],
  ];
}

class ReliabilityReporter {
  constructor(globalConfig) {
    this.globalConfig = globalConfig;
  }

  onRunComplete(_contexts, results) {
    const dir = process.env.REL_FIGURES_DIR;
    if (!dir || !existsSync(dir)) return;
    const sections = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')))
      .sort((a, b) => a.order - b.order);
    const ran = new Set(results.testResults.map((t) => relative(__dirname, t.testFilePath)));
    const full = SPECS.every((s) => ran.has(s));
    const started = process.env.REL_STARTED_AT ? new Date(process.env.REL_STARTED_AT) : null;
    const seconds = started ? Math.round((Date.now() - started.getTime()) / 1000) : null;
    const failed = results.numFailedTests;
    const out = [];
    out.push('# Reliability and security figures');
    out.push('');
    out.push(
      '_Written by `npm run test:reliability` (test/reliability, reporter.js) at the end of its last full run: ' +
        'do not edit by hand; run the suite to refresh it._',
    );
    out.push('');
    out.push(
      table(
        ['', ''],
        [
          ['Date', new Date().toISOString()],
          ...machine(),
          ['Run time', seconds === null ? '-' : `${Math.floor(seconds / 60)} min ${seconds % 60} s`],
          [
            'Result',
            `${results.numPassedTests} of ${results.numTotalTests} tests passed` +
              (failed ? `, **${failed} FAILED**` : '') +
              (results.numPendingTests ? `, ${results.numPendingTests} skipped` : ''),
          ],
        ],
      ),
    );
    out.push('');
    const allChecks = sections.flatMap((s) => s.checks);
    const bad = allChecks.filter((c) => !c.ok);
    out.push(
      `Claims checked: ${allChecks.length}, held: ${allChecks.length - bad.length}` +
        (bad.length ? `, **not held: ${bad.length}** (${bad.map((c) => c.name).join('; ')})` : '') +
        '.',
    );
    for (const s of sections) {
      out.push('');
      out.push(`## ${s.title}`);
      out.push('');
      for (const p of s.intro) {
        out.push(p);
        out.push('');
      }
      for (const t of s.tables) {
        out.push(`**${t.title}**`);
        out.push('');
        out.push(table(t.head, t.rows));
        out.push('');
      }
      if (s.checks.length) {
        out.push(
          table(
            ['claim', 'measured', 'expected', 'held'],
            s.checks.map((c) => [c.name, c.value, c.expected, c.ok ? 'yes' : '**NO**']),
          ),
        );
        out.push('');
      }
      for (const n of s.notes) {
        out.push(`- ${n}`);
      }
    }
    const failures = results.testResults.flatMap((f) =>
      f.testResults
        .filter((t) => t.status === 'failed')
        .map((t) => `${relative(ROOT, f.testFilePath)}: ${t.fullName}`),
    );
    if (failures.length) {
      out.push('');
      out.push('## Failed tests of this run');
      out.push('');
      for (const f of failures) out.push(`- ${f}`);
    }
    const text = out.join('\n').replace(/\n{3,}/g, '\n\n') + '\n';
    const target = full ? join(ROOT, 'docs/RELIABILITY.md') : join(dir, 'RELIABILITY.md');
    writeFileSync(target, text);
    process.stderr.write(
      `\nreliability: figures written to ${relative(process.cwd(), target) || target}` +
        (full ? '' : ' (partial run: docs/RELIABILITY.md left as it was)') +
        `\n(figures and gateway logs of this run: ${dir})\n`,
    );
  }
}

module.exports = ReliabilityReporter;
