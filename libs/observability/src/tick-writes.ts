import { Slots } from './slots';

/**
 * Text gathered for one write per event-loop turn instead of one per request (issue 18,
 * docs/BENCHMARKS.md "Syscalls per request"): the access lines and the ledger journal's rows.
 * What one turn adds is written at its end (process.nextTick: after that turn's promise
 * continuations). Whatever still waits when the process exits (process.exit, an uncaught
 * error) is written by one 'exit' listener, synchronously: the process cannot end with text
 * held in memory.
 */
export class TickBatch {
  private text = '';
  /** Its slot in `waiting` while text waits. */
  private slot = -1;
  private pending: Promise<void> | null = null;

  /** `write`: writes the turn's text, synchronously (its failures are its own to report). */
  constructor(private readonly write: (text: string) => void) {}

  /** Adds `text` to this turn's write. */
  add(text: string): void {
    this.text += text;
    if (this.pending) return;
    this.slot = waiting.add(this);
    listenForExit();
    this.pending = new Promise((resolve) =>
      process.nextTick(() => {
        this.flush();
        resolve();
      }),
    );
  }

  /** Resolves once everything added so far has been written; undefined when nothing waits. */
  get written(): Promise<void> | undefined {
    return this.pending ?? undefined;
  }

  /** Writes what waits now, synchronously (before a line that must come after it, or a close). */
  flush(): void {
    this.pending = null;
    if (this.slot >= 0) waiting.remove(this.slot);
    this.slot = -1;
    if (!this.text) return;
    const text = this.text;
    this.text = '';
    this.write(text);
  }
}

/** The batches with text waiting (not a Set: one add and one remove per turn, see Slots). */
const waiting = new Slots<TickBatch>();
let listening = false;

function listenForExit(): void {
  if (listening) return;
  listening = true;
  process.on('exit', () => {
    for (const b of [...waiting]) {
      try {
        b.flush();
      } catch {
        // exiting: nothing left to tell
      }
    }
  });
}
