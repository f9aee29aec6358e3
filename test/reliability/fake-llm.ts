import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { call } from './client';

/**
 * The fake OpenAI-compatible upstream (fake-llm-server.js) in a child process: fixed usage,
 * JSON and SSE, switchable faults. See that file for the protocol.
 */
export type Fault = 'none' | '5xx' | 'hang';

export interface FakeOptions {
  prompt_tokens?: number;
  completion_tokens?: number;
  /** Content chunks of a streamed answer (default 4). */
  chunks?: number;
  /** Delay between them (default 0). */
  chunk_delay_ms?: number;
}

export interface FakeStats {
  received: number;
  served: number;
  failed: number;
  hung: number;
  /** Requests still open (hung ones the gateway has not given up on yet). */
  open: number;
  fault: Fault;
}

export interface FakeLlm {
  url: string;
  setFault(f: Fault): Promise<void>;
  stats(): Promise<FakeStats>;
  close(): Promise<void>;
}

export async function startFakeLlm(): Promise<FakeLlm> {
  const proc: ChildProcess = spawn(process.execPath, [join(__dirname, 'fake-llm-server.js')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('fake upstream did not start')), 10_000);
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => reject(new Error(`fake upstream exited ${code}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    async setFault(fault) {
      const r = await call('POST', `${url}/__fault`, { fault });
      if (r.status !== 204) throw new Error(`fake upstream: fault ${fault} not set (${r.status})`);
    },
    async stats() {
      return JSON.parse((await call('GET', `${url}/__stats`)).text) as FakeStats;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGKILL');
      }),
  };
}
