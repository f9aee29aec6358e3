/**
 * Last line of defence for log output: every serialized log line passes through
 * `SecretScrubber.scrub` before it reaches stdout or LOG_FILE. pino's `redact` paths
 * (REDACT_PATHS in logging.ts) remove known fields from structured objects; this catches
 * secrets that end up inside strings (an error message quoting a header, a URL with
 * credentials, a key pasted into a name) and the configured secrets wherever they appear.
 */
export const REDACTED = '[redacted]';

/** Virtual keys (sk- + base62, current and legacy formats), JWTs, bearer credentials, URL passwords. */
const PATTERNS: [RegExp, string][] = [
  [/\bsk-[A-Za-z0-9_-]{12,}/g, `sk-${REDACTED}`],
  [/\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}/g, REDACTED],
  [/\b(bearer\s+)(?!\[redacted\])[^\s",\\]+/gi, `$1${REDACTED}`],
  [/\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/"]*:)[^\s@/"]+@/gi, `$1${REDACTED}@`],
  [
    /("(?:password|passwd|new_password|current_password|secret|token|access_token|refresh_token|api_key|apikey|master_key|masterkey|authorization|x-api-key)"\s*:\s*)"(?:[^"\\]|\\.)*"/gi,
    `$1"${REDACTED}"`,
  ],
];

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export class SecretScrubber {
  private readonly literal?: RegExp;

  /** `secrets`: values known at start (master key, JWT secret, metrics token, admin password). */
  constructor(secrets: (string | undefined | null)[] = []) {
    const forms = new Set<string>();
    for (const s of secrets) {
      if (!s || s.length < 6) continue;
      forms.add(s);
      forms.add(JSON.stringify(s).slice(1, -1)); // as it appears inside a JSON string
    }
    if (forms.size) {
      const alternatives = [...forms].sort((a, b) => b.length - a.length).map(escapeRegExp);
      this.literal = new RegExp(alternatives.join('|'), 'g');
    }
  }

  scrub(line: string): string {
    let out = this.literal ? line.replace(this.literal, REDACTED) : line;
    for (const [re, replacement] of PATTERNS) out = out.replace(re, replacement);
    return out;
  }
}
