/* global process */
// Preloaded into the CLI by report-scale.e2e-spec.ts (node -r): its peak RSS, at exit, on stderr.
process.on('exit', () => process.stderr.write(`max-rss-kb=${process.resourceUsage().maxRSS}\n`));
