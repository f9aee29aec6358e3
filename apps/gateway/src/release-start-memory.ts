import { performance } from 'node:perf_hooks';

type Gc = (options?: { type: 'minor' }) => void;

export interface ReleaseOptions {
  /** V8's collector (`--expose-gc`); without it nothing happens. */
  gc?: Gc;
  /** How long the event loop must have been quiet after the young collection (V8 rates allocation over ~5 s). */
  quietMs?: number;
  /** Below this event-loop utilization, each tick, the gateway counts as quiet. */
  quietElu?: number;
  /** After this long without a quiet moment, V8 is left to it (its memory reducer). */
  giveUpMs?: number;
  tickMs?: number;
}

/**
 * Gives back the memory the start left in V8's young generation.
 *
 * Loading the app allocates mostly what survives, so V8 grows the young generation to its
 * maximum while it starts (`--max-semi-space-size=32`: 64 MB committed) and keeps it:
 * about 40 MB of RSS an idle gateway holds until V8's memory reducer acts on its own, some
 * 100 s later. V8 shrinks the young generation at a collection when the allocation rate of
 * the last seconds is low, rated by what was allocated between collections: so at the
 * first quiet tick a young collection (it closes the start's interval; cheap), and once the
 * event loop has stayed quiet for `quietMs` after it a full one, which finds the rate low
 * (the young one is repeated after any busy tick). The same again after each busy spell that
 * a quiet one follows, until `giveUpMs` after the start: an operator's first steps after a
 * start (a login, keys created: ~10 MB of RSS, bench:idle) are given back too. Under traffic
 * nothing is collected here (the young generation is then in use, and a full collection would
 * only pause requests). Returns a stop function.
 *
 * Needs `--expose-gc` (npm start and the image set it).
 */
export function releaseStartMemory(options: ReleaseOptions = {}): () => void {
  const gc = options.gc ?? (globalThis as { gc?: Gc }).gc;
  const { quietMs = 6_000, quietElu = 0.05, giveUpMs = 120_000, tickMs = 1_000 } = options;
  if (typeof gc !== 'function') return () => undefined;
  const started = Date.now();
  let quietSince = started;
  let scavenged = false;
  /** Released since the last busy tick: nothing more to give back until the loop is busy again. */
  let released = false;
  let last = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization >= quietElu;
    last = now;
    if (busy) {
      scavenged = false;
      released = false;
    } else if (released) {
      // quiet since the last release
    } else if (!scavenged) {
      // The young collection closes the busy interval (V8 rates allocation between
      // collections): from here on the rate is the quiet one's.
      gc({ type: 'minor' });
      scavenged = true;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= quietMs) {
      gc();
      released = true;
    }
    if (Date.now() - started > giveUpMs) clearInterval(timer);
  }, tickMs);
  timer.unref();
  return () => clearInterval(timer);
}
