/**
 * Writes that wait to be flushed (lines gathered for one syscall per event-loop turn instead
 * of one per request: issue 18, docs/BENCHMARKS.md "Syscalls per request"). Whatever is still
 * waiting when the process exits (process.exit, an uncaught error) is written by one 'exit'
 * listener, synchronously: the process cannot end with lines held in memory.
 */
export interface PendingWrites {
  /** Writes what waits, synchronously. */
  flush(): void;
}

const waiting = new Set<PendingWrites>();
let listening = false;

function flushAll(): void {
  for (const w of [...waiting]) {
    try {
      w.flush();
    } catch {
      // exiting: nothing left to tell
    }
  }
}

/** `w` has writes waiting: flushed at exit unless `flushedBeforeExit(w)` is called first. */
export function flushAtExit(w: PendingWrites): void {
  waiting.add(w);
  if (!listening) {
    listening = true;
    process.on('exit', flushAll);
  }
}

/** `w` has nothing waiting any more. */
export function flushedBeforeExit(w: PendingWrites): void {
  waiting.delete(w);
}
