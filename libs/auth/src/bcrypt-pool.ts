import { Worker } from 'node:worker_threads';

/**
 * The worker's code: sets its own thread's nice value (Linux keeps one per thread; where
 * /proc/thread-self is missing it runs at the process's priority), then answers compares.
 */
const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcrypt);
let niced = false;
try {
  const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  require('node:os').setPriority(tid, workerData.nice);
  niced = true;
} catch {}
parentPort.postMessage({ ready: true, niced });
parentPort.on('message', ({ id, plain, hash }) => {
  try {
    parentPort.postMessage({ id, ok: bcrypt.compareSync(plain, hash) });
  } catch (e) {
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  }
});
`;

interface Job {
  id: number;
  plain: string;
  hash: string;
  resolve: (ok: boolean) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  job?: Job;
  /** Ends the worker once it has been idle idleMs. */
  idle?: NodeJS.Timeout;
}

/**
 * bcrypt compares on worker threads that run at a lower CPU priority (`nice`) than the
 * threads serving requests. bcrypt is slow on purpose (~60 ms of a core per compare at cost
 * 10): on the thread pool, a login flood's compares take whole cores from the event loop,
 * PostgreSQL and Redis; at nice 10 the kernel gives them only what the request path leaves
 * (README "Abuse resistance"). Workers start on first use, one per concurrent compare up to
 * `size` (BcryptGate admits at most that many), end after `idleMs` without work (a worker
 * holds ~8 MB of RSS; starting one takes ~30 ms), and never keep the process alive.
 */
export class BcryptPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  /** Whether the workers could lower their priority (false off Linux). */
  niced: boolean | undefined;

  constructor(
    private readonly size: number,
    private readonly nice: number,
    private readonly idleMs = 10_000,
  ) {}

  /** Workers alive (busy or idle). */
  get workers(): number {
    return this.slots.length;
  }

  compare(plain: string, hash: string): Promise<boolean> {
    if (this.closed) return Promise.reject(new Error('bcrypt pool closed'));
    return new Promise<boolean>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, plain, hash, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0)) j.reject(new Error('bcrypt pool closed'));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length) {
      let slot = this.slots.find((s) => !s.job);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      const job = this.queue.shift()!;
      clearTimeout(slot.idle);
      slot.job = job;
      slot.worker.postMessage({ id: job.id, plain: job.plain, hash: job.hash });
    }
  }

  private spawn(): Slot {
    const worker = new Worker(SOURCE, {
      eval: true,
      workerData: { bcrypt: require.resolve('bcrypt'), nice: this.nice },
    });
    worker.unref();
    const slot: Slot = { worker };
    worker.on(
      'message',
      (m: { ready?: boolean; niced?: boolean; id?: number; ok?: boolean; error?: string }) => {
        if (m.ready) {
          this.niced = m.niced;
          return;
        }
        const job = slot.job;
        if (!job || job.id !== m.id) return;
        slot.job = undefined;
        if (m.error !== undefined) job.reject(new Error(m.error));
        else job.resolve(m.ok === true);
        this.dispatch();
        if (!slot.job) {
          slot.idle = setTimeout(() => {
            if (!slot.job) void slot.worker.terminate(); // 'exit' takes the slot out
          }, this.idleMs);
          slot.idle.unref();
        }
      },
    );
    // A worker that dies takes only its own compare with it; the next compare starts another.
    const gone = (e: Error) => {
      clearTimeout(slot.idle);
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      slot.job?.reject(e);
      slot.job = undefined;
      if (!this.closed) this.dispatch();
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new Error(`bcrypt worker exited (${code})`)));
    this.slots.push(slot);
    return slot;
  }
}
