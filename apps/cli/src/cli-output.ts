import { Injectable } from '@nestjs/common';
import { once } from 'node:events';
import { CliError, EXIT } from './cli-error';

type Stream = NodeJS.WriteStream;

/**
 * Where commands print. Results go to stdout, progress and prompts to stderr, so
 * `--json > file` and pipes get only the result. Writes wait for the pipe to drain: a
 * slow reader slows the command down instead of growing a buffer.
 */
@Injectable()
export class CliOutput {
  /** What the process exits with when the command returns normally. */
  exitCode: number = EXIT.ok;
  private broken = false;
  private progressShown = false;

  private readonly stdout: Stream = process.stdout;
  private readonly stderr: Stream = process.stderr;

  constructor() {
    // `| head`: the reader is gone; stop the command (and clean up) instead of crashing.
    this.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') this.broken = true;
    });
  }

  async write(text: string): Promise<void> {
    if (this.broken) throw new CliError('', EXIT.brokenPipe);
    this.clearProgress();
    try {
      // events.once rejects when 'error' comes first (the reader went away meanwhile).
      if (!this.stdout.write(text)) await once(this.stdout, 'drain');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
      this.broken = true;
    }
    if (this.broken) throw new CliError('', EXIT.brokenPipe);
  }

  line(text = ''): Promise<void> {
    return this.write(`${text}\n`);
  }

  async lines(lines: string[]): Promise<void> {
    if (lines.length) await this.write(lines.join('\n') + '\n');
  }

  json(value: unknown): Promise<void> {
    return this.write(JSON.stringify(value, null, 2) + '\n');
  }

  /** A note for the operator (stderr): not part of the result. */
  note(text: string): void {
    this.clearProgress();
    this.stderr.write(`${text}\n`);
  }

  get interactive(): boolean {
    return !!this.stderr.isTTY;
  }

  /** A status line rewritten in place on a terminal's stderr; nothing otherwise. */
  progress(text: string): void {
    if (!this.stderr.isTTY) return;
    this.stderr.write(`\r\x1b[2K${text}`);
    this.progressShown = true;
  }

  clearProgress(): void {
    if (!this.progressShown) return;
    this.stderr.write('\r\x1b[2K');
    this.progressShown = false;
  }
}
