import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The connection closed or timed out without a status line. */
  error?: string;
}

/**
 * One HTTP/1.1 request written byte for byte on a fresh socket: paths, headers and bodies
 * go out exactly as given (no URL normalisation, no encoding), which fetch and http.request
 * refuse or rewrite. `Connection: close`; the response is read to the end.
 */
export function raw(
  base: string,
  method: string,
  path: string,
  headers: [string, string][] = [],
  body?: Buffer | string,
  timeoutMs = 10_000,
): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const head =
    `${method} ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n` +
    headers.map(([k, v]) => `${k}: ${v}\r\n`).join('') +
    (payload ? `Content-Length: ${payload.length}\r\n` : '') +
    '\r\n';
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(port), hostname);
    let done = false;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...parse(Buffer.concat(chunks)), ...(error ? { error } : {}) });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    socket.on('connect', () => {
      // latin1: the head's bytes are what the caller wrote (a test may put any byte in it)
      socket.write(Buffer.from(head, 'latin1'));
      if (payload) socket.write(payload);
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    socket.on('error', (e) => finish(e.message));
  });
}

function parse(buf: Buffer): Omit<RawResponse, 'error'> {
  const sep = buf.indexOf('\r\n\r\n');
  if (sep < 0) return { status: 0, headers: {}, body: buf.toString('utf8') };
  const lines = buf.subarray(0, sep).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = buf.subarray(sep + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const out: Buffer[] = [];
    for (;;) {
      const eol = rest.indexOf('\r\n');
      if (eol < 0) break;
      const size = parseInt(rest.subarray(0, eol).toString('latin1'), 16);
      if (!size) break;
      out.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 2 + size + 2);
    }
    rest = Buffer.concat(out);
  }
  return { status, headers, body: rest.toString('utf8') };
}
