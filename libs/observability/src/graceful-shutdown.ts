import type { Server, ServerResponse } from 'node:http';
import { constants } from 'node:os';
import { Slots } from './slots';

export interface ShutdownLogger {
  log(message: string): unknown;
  warn(message: string): unknown;
  error(message: string): unknown;
}

export interface GracefulShutdownOptions {
  /** How long in-flight requests and streams may take to finish (SHUTDOWN_GRACE_MS). */
  graceMs: number;
  /** Runs the Nest lifecycle: ledger flush (beforeApplicationShutdown), pools, embedded PostgreSQL. */
  closeApp: () => Promise<void>;
  logger: ShutdownLogger;
  /** Called as draining starts (readiness turns 503). */
  onDraining?: () => void;
  /** How long closeApp may take before the process gives up and exits 1. */
  closeTimeoutMs?: number;
  signals?: NodeJS.Signals[];
  /** A repeat of the first signal within this is the same event delivered twice (default 1000; see onSignal). */
  samePressMs?: number;
  exit?: (code: number) => void;
}

/**
 * Calls `onGone` once when the process that started this one is gone: the parent pid changes
 * (the orphan is adopted by init or a subreaper). For `npm start`: npm passes SIGINT and
 * SIGTERM on to the gateway, but a SIGKILLed npm leaves it running, and with it the embedded
 * PostgreSQL (README "Clean failure"). Checked every `intervalMs`; the timer does not keep
 * the process alive.
 */
export function watchParent(onGone: (parentPid: number) => void, intervalMs = 1000): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone(parent);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * SIGTERM/SIGINT for the gateway (docs in README, "Operating it"):
 *
 * 1. stop accepting: `server.close()`; readiness turns 503; idle keep-alive sockets are
 *    closed at once and again every 100 ms, and responses still being written carry
 *    `Connection: close`, so no client keeps a socket (and the process) alive;
 * 2. drain: wait until every in-flight request and SSE stream has ended, at most `graceMs`;
 *    what is left then is cut (`closeAllConnections`);
 * 3. `closeApp()` (Nest `app.close()`: onModuleDestroy, beforeApplicationShutdown = ledger
 *    flush, HTTP adapter, onApplicationShutdown = DataSource, embedded PostgreSQL);
 * 4. exit 0 (1 when closing the app failed or hung past `closeTimeoutMs`).
 *
 * A second signal while this runs exits at once (128 + signal number; the first signal
 * repeated within a second does not count: under `npm start` one Ctrl-C arrives twice). Nest's own
 * `enableShutdownHooks` is not used: it would run step 3 before steps 1 and 2.
 */
export class GracefulShutdown {
  /** Not a Set: see Slots (one add and one remove per request). */
  private readonly active = new Slots<ServerResponse>();
  private state: 'running' | 'draining' | 'closing' = 'running';
  private readonly listeners = new Map<NodeJS.Signals, () => void>();
  private done?: Promise<number>;
  private firstSignal?: { signal: NodeJS.Signals; at: number };

  constructor(
    private readonly server: Server,
    private readonly opts: GracefulShutdownOptions,
  ) {
    // Before Express's own listener, so a request arriving while draining gets the header too.
    server.prependListener('request', (_req, res: ServerResponse) => {
      const slot = this.active.add(res);
      res.once('close', () => this.active.remove(slot));
      if (this.state !== 'running' && !res.headersSent) res.setHeader('Connection', 'close');
    });
  }

  /** Requests (including open streams) not yet finished. */
  get inFlight(): number {
    return this.active.size;
  }

  get shuttingDown(): boolean {
    return this.state !== 'running';
  }

  /** Listen for the signals (default SIGTERM, SIGINT and SIGHUP: the terminal closed). */
  install(): this {
    for (const signal of this.opts.signals ?? (['SIGTERM', 'SIGINT', 'SIGHUP'] as NodeJS.Signals[])) {
      const listener = () => void this.onSignal(signal);
      this.listeners.set(signal, listener);
      process.on(signal, listener);
    }
    return this;
  }

  uninstall(): void {
    for (const [signal, listener] of this.listeners) process.removeListener(signal, listener);
    this.listeners.clear();
  }

  private async onSignal(signal: NodeJS.Signals): Promise<void> {
    const exit = this.opts.exit ?? ((code: number) => process.exit(code));
    // Ctrl-C under `npm start` arrives twice: from the terminal (the whole foreground process
    // group) and from npm, which passes it on. The same signal within a second is that one press.
    if (
      this.firstSignal?.signal === signal &&
      Date.now() - this.firstSignal.at < (this.opts.samePressMs ?? 1000)
    )
      return;
    this.firstSignal ??= { signal, at: Date.now() };
    if (this.done) {
      this.opts.logger.warn(`${signal} again: exiting now, without waiting for requests or the ledger flush`);
      exit(128 + (constants.signals[signal] ?? 15));
      return;
    }
    exit(await this.shutdown(signal));
  }

  /** Steps 1 to 3 above; resolves to the exit code. Idempotent. */
  shutdown(reason = 'shutdown'): Promise<number> {
    this.done ??= this.run(reason);
    return this.done;
  }

  private async run(reason: string): Promise<number> {
    const { logger, graceMs } = this.opts;
    const started = Date.now();
    this.state = 'draining';
    logger.log(
      `${reason}: stopped accepting connections; waiting up to ${graceMs} ms for ${this.inFlight} in-flight`,
    );
    this.opts.onDraining?.();
    this.server.close();
    for (const res of this.active) if (!res.headersSent) res.setHeader('Connection', 'close');
    this.server.closeIdleConnections();

    while (this.active.size > 0 && Date.now() - started < graceMs) {
      await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, graceMs - (Date.now() - started)))));
      this.server.closeIdleConnections();
    }
    if (this.active.size > 0) {
      logger.warn(`grace period over: cutting ${this.active.size} request(s) still running`);
    } else {
      logger.log(`in-flight requests finished after ${Date.now() - started} ms`);
    }
    this.server.closeAllConnections();

    this.state = 'closing';
    const timeoutMs = this.opts.closeTimeoutMs ?? 30000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.opts.closeApp(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`closing took longer than ${timeoutMs} ms`)), timeoutMs);
          timer.unref();
        }),
      ]);
      logger.log(`shutdown complete after ${Date.now() - started} ms`);
      return 0;
    } catch (e) {
      logger.error(`shutdown failed: ${(e as Error)?.message ?? String(e)}`);
      return 1;
    } finally {
      clearTimeout(timer);
      this.uninstall();
    }
  }
}
