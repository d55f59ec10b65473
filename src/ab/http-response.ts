/**
 * A small HTTP/1.x response parser for the load generator: status line and headers, then a body
 * framed by Content-Length, chunked transfer coding, or the end of the connection. It only frames
 * responses (the client never pipelines: one request outstanding per connection), so it keeps no
 * body bytes and costs little per response. Anything it cannot frame is an error, never a guess.
 */

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;
const MAX_LINE = 4096;

type State = 'idle' | 'head' | 'fixed' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'until-close';

/** A response the server got wrong. */
export class HttpProtocolError extends Error {
  readonly code = 'ERR_VLS_AB_HTTP_PROTOCOL';
}

export class HttpResponseParser {
  private state: State = 'idle';
  private pending: Buffer | undefined;
  private remaining = 0;
  private noBody = false;
  private status = 0;
  private keepAlive = true;
  /** A response is complete and not yet delivered. */
  private done = false;
  private readonly onResponse: (status: number, keepAlive: boolean) => void;

  /** onResponse runs once per complete response (1xx interim responses are skipped). */
  constructor(onResponse: (status: number, keepAlive: boolean) => void) {
    this.onResponse = onResponse;
  }

  /** A request went out: the next bytes are its response. */
  expect(method: string): void {
    if (this.state !== 'idle') throw new HttpProtocolError('a request was sent before the previous response ended');
    this.state = 'head';
    this.noBody = method === 'HEAD';
  }

  /** True while a response is awaited or being read. */
  get busy(): boolean {
    return this.state !== 'idle';
  }

  feed(data: Buffer): void {
    const buf = this.pending ? Buffer.concat([this.pending, data]) : data;
    this.pending = undefined;
    let pos = 0;
    while (pos < buf.length) {
      if (this.done) this.deliver(buf.length - pos);
      switch (this.state) {
        case 'idle':
          // (a complete response was delivered above, so these bytes belong to no request)
          throw new HttpProtocolError(`the server sent ${buf.length - pos} bytes nobody asked for`);
        case 'head': {
          const end = buf.indexOf(CRLFCRLF, pos);
          if (end < 0) {
            if (buf.length - pos > MAX_HEAD) throw new HttpProtocolError('response head longer than 64 KiB');
            this.pending = buf.subarray(pos);
            return;
          }
          this.head(buf.toString('latin1', pos, end));
          pos = end + 4;
          break;
        }
        case 'fixed':
        case 'chunk-data': {
          const n = Math.min(this.remaining, buf.length - pos);
          this.remaining -= n;
          pos += n;
          if (this.remaining === 0) {
            if (this.state === 'fixed') this.complete();
            else this.state = 'chunk-crlf';
          }
          break;
        }
        case 'until-close':
          pos = buf.length;
          break;
        case 'chunk-size':
        case 'chunk-crlf':
        case 'trailers': {
          const end = buf.indexOf(CRLF, pos);
          if (end < 0) {
            if (buf.length - pos > MAX_LINE) throw new HttpProtocolError('chunk line longer than 4 KiB');
            this.pending = buf.subarray(pos);
            return;
          }
          const line = buf.toString('latin1', pos, end);
          pos = end + 2;
          this.line(line);
          break;
        }
      }
    }
    if (this.done) this.deliver(0);
  }

  /** Hands a complete response to the callback; bytes after it are an error (we never pipeline). */
  private deliver(extra: number): void {
    this.done = false;
    if (extra > 0) throw new HttpProtocolError(`the server sent ${extra} bytes after the end of a response`);
    this.onResponse(this.status, this.keepAlive);
  }

  /** The connection ended: completes a body framed by the end of the connection; otherwise an error if a response was under way. */
  end(): void {
    if (this.state === 'until-close') {
      this.complete();
      this.deliver(0);
      return;
    }
    if (this.state !== 'idle') throw new HttpProtocolError('the connection ended in the middle of a response');
  }

  private head(text: string): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0] ?? '');
    if (!m) throw new HttpProtocolError(`not an HTTP/1.x status line: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
    const status = Number(m[2]);
    let length: number | undefined;
    let chunked = false;
    let connection = '';
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i] as string;
      const colon = l.indexOf(':');
      if (colon <= 0) throw new HttpProtocolError(`bad header line: ${JSON.stringify(l.slice(0, 80))}`);
      const name = l.slice(0, colon).trim().toLowerCase();
      const value = l.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^\d{1,15}$/.test(value)) throw new HttpProtocolError(`bad content-length: ${JSON.stringify(value)}`);
        const v = Number(value);
        if (length !== undefined && length !== v) throw new HttpProtocolError('conflicting content-length headers');
        length = v;
      } else if (name === 'transfer-encoding') {
        const codings = value.toLowerCase().split(',').map((s) => s.trim());
        chunked = codings[codings.length - 1] === 'chunked';
        if (!chunked) throw new HttpProtocolError(`unsupported transfer-encoding: ${value}`);
      } else if (name === 'connection') {
        connection = value.toLowerCase();
      }
    }
    if (status >= 100 && status < 200) {
      if (status === 101) throw new HttpProtocolError('the server switched protocols (101); only HTTP/1.x is measured');
      return; // an interim response: the real one follows
    }
    this.status = status;
    this.keepAlive = m[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
    if (this.noBody || status === 204 || status === 304) {
      this.complete();
    } else if (chunked) {
      this.state = 'chunk-size';
    } else if (length !== undefined) {
      this.remaining = length;
      if (length === 0) this.complete();
      else this.state = 'fixed';
    } else {
      this.keepAlive = false;
      this.state = 'until-close';
    }
  }

  private line(line: string): void {
    if (this.state === 'chunk-size') {
      const m = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line);
      if (!m) throw new HttpProtocolError(`bad chunk size line: ${JSON.stringify(line.slice(0, 80))}`);
      const n = parseInt(m[1] as string, 16);
      if (n === 0) this.state = 'trailers';
      else {
        this.remaining = n;
        this.state = 'chunk-data';
      }
    } else if (this.state === 'chunk-crlf') {
      if (line !== '') throw new HttpProtocolError('chunk data longer than its size');
      this.state = 'chunk-size';
    } else if (line === '') {
      this.complete(); // end of the trailers
    }
  }

  private complete(): void {
    this.state = 'idle';
    this.done = true;
  }
}
