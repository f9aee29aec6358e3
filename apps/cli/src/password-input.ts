import { CliError } from './cli-error';

/** All of stdin (`--password-stdin`), without the one trailing newline `echo` adds. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/**
 * Asks on the terminal without echoing what is typed (prompts on stderr). The terminal is
 * put in raw mode before the first prompt is shown and stays so until the last answer:
 * whatever is typed after a prompt appears is never echoed.
 */
export async function askHidden(prompts: string[]): Promise<string[]> {
  const stdin = process.stdin;
  if (!stdin.isTTY)
    throw new CliError('no terminal to ask for the password on: pipe it in with --password-stdin');
  let pending = '';
  let wake: (() => void) | undefined;
  const onData = (data: Buffer) => {
    pending += data.toString('utf8');
    wake?.();
  };
  stdin.setRawMode(true);
  stdin.on('data', onData);
  stdin.resume();
  try {
    const answers: string[] = [];
    for (const prompt of prompts) {
      process.stderr.write(prompt);
      let value = '';
      for (let done = false; !done;) {
        if (!pending) await new Promise<void>((resolve) => (wake = resolve));
        const chars = [...pending];
        pending = '';
        for (const [i, ch] of chars.entries()) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') {
            pending = chars.slice(i + 1).join(''); // typed ahead: the next answer
            done = true;
            break;
          }
          if (ch === '\u0003') throw new CliError('cancelled', 130);
          if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
          else if (ch >= ' ') value += ch;
        }
      }
      process.stderr.write('\n');
      answers.push(value);
    }
    return answers;
  } finally {
    stdin.off('data', onData);
    stdin.setRawMode(false);
    stdin.pause();
  }
}
