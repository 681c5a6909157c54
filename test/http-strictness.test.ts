/**
 * HTTP strictness where nginx refuses, driven with raw bytes against a real sidecar and php-fpm:
 * missing or doubled Host, Transfer-Encoding on HTTP/1.0, unknown HTTP versions, CONNECT, TRACE
 * and a malformed chunked body. A regression looks like one of these requests reaching PHP (a 200),
 * a CONNECT answered by a silent close, a bare 400 for an unknown version (nginx says 505), a
 * refusal missing from askr_rejected_requests_total, or an access-log line saying 499 "client
 * closed the connection" for a body whose chunked framing the client got a 400 for.
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { until } from './helpers/wait.ts';

let s: TestSidecar;
beforeAll(async () => {
  s = await startTestSidecar();
});
afterAll(async () => {
  await s.close();
});

const ALLOW = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

interface RawReply {
  statusLine: string;
  headers: Map<string, string>;
  body: string;
  /** False when the connection was still open after IDLE_MS without data (we cut it). */
  closedBySidecar: boolean;
}

const IDLE_MS = 3000;

/**
 * Writes each part in order (waiting for `between` after the first one when given), then reads
 * until the sidecar closes the connection, or until IDLE_MS pass without data (a regression that
 * keeps the connection open must fail fast). Requests that are not refused ask for the close.
 */
async function send(parts: readonly string[], between?: () => Promise<void>): Promise<RawReply> {
  const socket = connect(s.port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  let closedBySidecar = true;
  socket.setTimeout(IDLE_MS, () => {
    closedBySidecar = false;
    socket.destroy();
  });
  const closed = once(socket, 'close');
  for (const [i, part] of parts.entries()) {
    if (i === 1 && between !== undefined) await between();
    socket.write(part);
  }
  await closed;
  const text = Buffer.concat(chunks).toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  expect(end, `no complete response head in ${JSON.stringify(text)}`).toBeGreaterThan(0);
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { statusLine, headers, body: text.slice(end + 4), closedBySidecar };
}

/** askr_rejected_requests_total{reason} of the running sidecar. */
async function rejected(reason: string): Promise<number> {
  const metric = s.registry.getSingleMetric('askr_rejected_requests_total');
  if (metric === undefined) throw new Error('askr_rejected_requests_total is not registered');
  const { values } = await metric.get();
  return values.find((v) => v.labels['reason'] === reason)?.value ?? 0;
}

function accessLog(requestId: string | undefined): Record<string, unknown> | undefined {
  return s.logs.find((l) => l['msg'] === 'request' && l['requestId'] === requestId);
}

describe('requests nginx refuses are refused, answered in plain text and counted', () => {
  const cases: ReadonlyArray<{
    name: string;
    raw: string;
    statusLine: string;
    message: string;
    reason: string;
    allow?: boolean;
  }> = [
    {
      name: 'an HTTP/1.1 request without Host gets 400',
      raw: 'GET / HTTP/1.1\r\n\r\n',
      statusLine: 'HTTP/1.1 400 Bad Request',
      message: 'HTTP/1.1 request without a Host header',
      reason: 'bad_host',
    },
    {
      name: 'a request with two Host headers gets 400',
      raw: 'GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n',
      statusLine: 'HTTP/1.1 400 Bad Request',
      message: 'the request has 2 Host headers; exactly one is allowed',
      reason: 'bad_host',
    },
    {
      name: 'an HTTP/1.0 request with two Host headers gets 400 too',
      raw: 'GET / HTTP/1.0\r\nHost: a.example\r\nhost: b.example\r\n\r\n',
      statusLine: 'HTTP/1.1 400 Bad Request',
      message: 'the request has 2 Host headers; exactly one is allowed',
      reason: 'bad_host',
    },
    {
      name: 'Transfer-Encoding: chunked on an HTTP/1.0 request gets 400',
      raw: 'POST /dump HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      statusLine: 'HTTP/1.1 400 Bad Request',
      message: 'Transfer-Encoding is not allowed in an HTTP/1.0 request',
      reason: 'bad_framing',
    },
    ...['1.2', '3.1', '9.9'].map((v) => ({
      name: `HTTP/${v} on the request line gets 505`,
      raw: `GET / HTTP/${v}\r\nHost: x\r\n\r\n`,
      statusLine: 'HTTP/1.1 505 HTTP Version Not Supported',
      message: 'HTTP version not supported; this server speaks HTTP/1.1 and HTTP/1.0',
      reason: 'http_version',
    })),
    {
      // llhttp parses this one as a request; it must not reach PHP.
      name: 'HTTP/2.0 on the request line of an HTTP/1 connection gets 505',
      raw: 'GET / HTTP/2.0\r\nHost: x\r\n\r\n',
      statusLine: 'HTTP/1.1 505 HTTP Version Not Supported',
      message: 'HTTP/2.0 is not supported; this server speaks HTTP/1.1 and HTTP/1.0',
      reason: 'http_version',
    },
    {
      name: 'an HTTP/2 connection preface (prior knowledge) gets 505',
      raw: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
      statusLine: 'HTTP/1.1 505 HTTP Version Not Supported',
      message: 'HTTP version not supported; this server speaks HTTP/1.1 and HTTP/1.0',
      reason: 'http_version',
    },
    {
      name: 'CONNECT gets 405 with Allow, not a silent close',
      raw: 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
      statusLine: 'HTTP/1.1 405 Method Not Allowed',
      message: 'CONNECT is not allowed: this is an origin server, not a proxy',
      reason: 'method_not_allowed',
      allow: true,
    },
    {
      name: 'TRACE gets 405 with Allow',
      raw: 'TRACE / HTTP/1.1\r\nHost: x\r\nCookie: session=secret\r\n\r\n',
      statusLine: 'HTTP/1.1 405 Method Not Allowed',
      message: 'TRACE is not allowed',
      reason: 'method_not_allowed',
      allow: true,
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const before = await rejected(c.reason);
      const reply = await send([c.raw]);
      expect(reply.statusLine).toBe(c.statusLine);
      expect(reply.headers.get('content-type')).toBe('text/plain; charset=utf-8');
      expect(reply.headers.get('connection')).toBe('close');
      expect(reply.closedBySidecar).toBe(true);
      expect(reply.body.split('\n')).toContain(c.message);
      expect(reply.body).not.toContain('front-controller'); // PHP never ran
      if (c.allow === true) expect(reply.headers.get('allow')).toBe(ALLOW);
      expect(await rejected(c.reason)).toBe(before + 1);
    });
  }

  it('a refused request with Expect: 100-continue gets the refusal, not 100 Continue', async () => {
    const reply = await send([
      'POST /dump HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n',
    ]);
    expect(reply.statusLine).toBe('HTTP/1.1 400 Bad Request');
    expect(reply.body).toContain('HTTP/1.1 request without a Host header');
  });

  it('a refusal is in the access log with its status and reason', async () => {
    const reply = await send(['GET /status/200 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n']);
    const requestId = reply.headers.get('x-request-id');
    await until(() => accessLog(requestId) !== undefined, 5000, 'the access-log line');
    expect(accessLog(requestId)).toMatchObject({
      status: 400,
      path: '/status/200',
      error: 'the request has 2 Host headers; exactly one is allowed',
    });
  });
});

describe('a malformed chunked request body', () => {
  const head = 'POST /dump HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n';
  const variants: ReadonlyArray<{ name: string; parts: string[]; waitForHandler: boolean }> = [
    {
      name: 'an invalid chunk size in the same packet as the head',
      parts: [`${head}zz\r\nabc\r\n0\r\n\r\n`],
      waitForHandler: false,
    },
    {
      name: 'a chunk longer than announced, after the PHP handler started reading the body',
      parts: [`${head}3\r\nabc\r\n`, '3\r\nabcdef\r\n0\r\n\r\n'],
      waitForHandler: true,
    },
  ];

  for (const v of variants) {
    it(`is answered 400 and logged as 400, not 499: ${v.name}`, async () => {
      const before = await rejected('bad_framing');
      const busy = s.http.inFlight();
      const handlerStarted = (): Promise<void> =>
        until(() => s.http.inFlight() > busy, 5000, 'the request to reach its handler');
      const reply = await send(v.parts, v.waitForHandler ? handlerStarted : undefined);
      expect(reply.statusLine).toBe('HTTP/1.1 400 Bad Request');
      expect(reply.body).toMatch(/^malformed request body framing: invalid chunked body \(.+\)$/m);
      const requestId = reply.headers.get('x-request-id');
      expect(requestId).toMatch(/^[0-9a-f]{16}$/);
      expect(reply.body).toContain(`request id: ${requestId ?? ''}`);

      await until(() => accessLog(requestId) !== undefined, 5000, 'the access-log line');
      const line = accessLog(requestId);
      expect(line).toMatchObject({ status: 400, method: 'POST', path: '/dump' });
      expect(line?.['error']).toMatch(/^malformed request body framing: invalid chunked body/);
      expect(await rejected('bad_framing')).toBe(before + 1);
    });
  }
});

describe('ordinary requests still reach PHP', () => {
  it('HTTP/1.0 without Host gets 200 from PHP', async () => {
    const reply = await send(['GET / HTTP/1.0\r\n\r\n']);
    expect(reply.statusLine).toBe('HTTP/1.1 200 OK');
    expect(reply.body).toContain('front-controller');
  });

  it('HTTP/1.1 with Host gets 200 from PHP', async () => {
    const reply = await send(['GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n']);
    expect(reply.statusLine).toBe('HTTP/1.1 200 OK');
    expect(reply.body).toContain('front-controller');
  });

  it('a well-formed chunked body on HTTP/1.1 reaches PHP whole', async () => {
    const reply = await send([
      'POST /dump HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n' +
        '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
    ]);
    expect(reply.statusLine).toBe('HTTP/1.1 200 OK');
    // The body may come chunked: look for the field, not at the framing.
    expect(reply.body).toContain('"input_length": 11');
  });
  it('a client that resets its connection is not counted as a refused request', async () => {
    // Regression: a reset (ECONNRESET) reached clientError and was counted as bad_request, so a
    // browser closing idle keep-alive connections looked like a stream of malformed requests.
    const total = async (): Promise<number> => {
      const metric = s.registry.getSingleMetric('askr_rejected_requests_total');
      if (metric === undefined) throw new Error('askr_rejected_requests_total is not registered');
      return (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
    };
    const before = await total();
    const socket = connect(s.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nX-Half: ');
    await new Promise<void>((resolve) => socket.write('', () => resolve()));
    socket.resetAndDestroy();
    await once(socket, 'close');
    // A malformed request on a new connection afterwards: its 400 is the one refusal counted.
    const reply = await send(['GET / HTTP/9.9\r\nHost: x\r\n\r\n']);
    expect(reply.statusLine).toMatch(/^HTTP\/1\.1 (400|505) /);
    expect(await total()).toBe(before + 1);
  });
});
