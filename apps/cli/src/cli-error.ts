/**
 * An error meant for the operator: printed as one `error: <message>` line on stderr (no
 * stack), then the process exits with `exitCode`. An empty message prints nothing.
 */
export class CliError extends Error {
  override name = 'CliError';

  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Exit codes scripts can rely on (docs/cli.md). */
export const EXIT = {
  ok: 0,
  error: 1,
  /** keys:backfill-report --fail-if-any found keys without a lookup hash. */
  found: 2,
  /** stdout was closed by the reader (`| head`). */
  brokenPipe: 141,
} as const;
