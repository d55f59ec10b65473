/**
 * A stand-in for a TCPWrap handle that rides a cut-through session, so that a genuine net.Socket
 * can sit on it: net.Socket calls readStart/readStop/shutdown/close/reset/getsockname/getpeername/
 * setNoDelay/setKeepAlive/ref/unref on its `_handle`, and reads bytesRead/bytesWritten from it.
 * Reading pushes into the socket directly (what Node's onStreamRead does for a real handle);
 * writing goes through net.Socket's `_writeGeneric`, which {@link installSessionWriter} routes to
 * the session for sockets on a SessionHandle. Whoever puts the handle under a socket tells it
 * ({@link SessionHandle.attachSocket}).
 */
import type { Socket } from 'node:net';

import { EPOLLERR, EPOLLHUP, EPOLLRDHUP, type SessionReader, type VlsSession } from './worker';

/** An address as getsockname/getpeername fill it in. */
export interface SockAddr {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

/** What a bulk read asks for: the addon's receive pool block (RecvPool::kBlock) is this size. */
const READ_CHUNK = 64 * 1024;
/** Reads at least this large switch a session to a fresh buffer per read. */
const BIG_READ = 16 * 1024;
/**
 * Small reads land in this thread's slab, each chunk a Buffer over its own part of it (what
 * Buffer's pool does for allocUnsafe): no allocation beyond the view and no copy. A new slab is
 * started when less than SLAB_MIN_ROOM is left; like a pooled Buffer, a chunk that is kept keeps
 * its slab alive.
 */
const SLAB = 64 * 1024;
const SLAB_MIN_ROOM = 4 * 1024;
let slab: ArrayBuffer | undefined;
let slabView: Buffer | undefined;
let slabUsed = SLAB;
let nextAsyncId = 1;

/** The per-socket pieces of Node's private state that the handle drives. */
type SocketInternals = Socket & {
  _unrefTimer(): void;
  _pendingData: unknown;
  _pendingEncoding: string;
  _writeGeneric(writev: boolean, data: unknown, encoding: BufferEncoding, cb: (err?: Error) => void): void;
  _handle: unknown;
  resetAndDestroy(): Socket;
};

export class SessionHandle implements SessionReader {
  reading = false;
  readonly fd = -1;
  writeQueueSize = 0;
  onread: unknown = null;
  bytesRead = 0;
  bytesWritten = 0;
  session: VlsSession | undefined;
  socket: SocketInternals | undefined;
  readonly local: SockAddr;
  readonly remote: SockAddr;
  /** False while an outgoing connection has no local address yet (like an unbound TCP handle). */
  localKnown = true;
  private readonly asyncId = 1_000_000_000 + nextAsyncId++;
  private closed = false;
  private refed = true;
  private bigReads = false;
  /** A first read after readStart() is queued for the next turn of the loop. */
  private startPending = false;

  constructor(session: VlsSession | undefined, local: SockAddr, remote: SockAddr) {
    this.local = local;
    this.remote = remote;
    if (session) this.bind(session);
  }

  /** The net.Socket this handle sits under (reads are pushed into it). */
  attachSocket(socket: Socket): void {
    this.socket = socket as SocketInternals;
  }

  /** Attach the session (at once for accepted sockets, on 'connect' for outgoing ones). */
  bind(session: VlsSession): void {
    this.session = session;
    if (!this.refed) session.unref();
    session.reader = this;
  }

  /** The session's read readiness (this handle is its reader). */
  onReadable(events: number): void {
    // Only a plain EPOLLIN may stop at a short read: end of stream or a reset reported with it is
    // not reported again.
    if (this.reading && !this.startPending) this.pump((events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) !== 0);
  }

  getAsyncId(): number {
    return this.asyncId;
  }

  /**
   * Start (or resume) reading. A kernel handle that starts reading is first polled on the next
   * turn of the loop, after the close callbacks of this one: a connection accepted in a callback
   * never delivers data inside it, nor before sockets destroyed in the same turn have emitted
   * 'close'. So the first read here waits for the next turn (an immediate queued from an
   * immediate), and 'readable' events that come meanwhile are left to it (it reads until EAGAIN
   * or end of stream).
   */
  readStart(): number {
    this.reading = true;
    if (this.session && !this.startPending) {
      this.startPending = true;
      setImmediate(() =>
        setImmediate(() => {
          this.startPending = false;
          if (this.reading) this.pump(true);
        }),
      );
    }
    return 0;
  }

  readStop(): number {
    this.reading = false;
    return 0;
  }

  /**
   * Read what the session has and push it into the socket, as onStreamRead would. Small reads
   * land in the thread's slab and are pushed as views of it; a session that keeps delivering large
   * reads gets a fresh buffer per read instead. A read shorter than asked emptied the fifo: the
   * next bytes raise a new 'readable', so there is no second call just to meet EAGAIN - unless
   * `drain` says to read on until EAGAIN or end of stream (after a pause, and when the event also
   * reported end of stream or an error, which will not be reported again).
   */
  private pump(drain: boolean): void {
    const s = this.session;
    const sock = this.socket;
    if (!s || !sock || this.closed) return;
    while (this.reading) {
      let n: number | null;
      let chunk: Buffer | undefined;
      let asked: number;
      try {
        if (this.bigReads) {
          const r = s.readChunk();
          asked = READ_CHUNK;
          if (r === null || r === 0) n = r;
          else {
            chunk = r;
            n = r.length;
          }
        } else {
          if (SLAB - slabUsed < SLAB_MIN_ROOM) {
            slab = new ArrayBuffer(SLAB);
            slabView = Buffer.from(slab);
            slabUsed = 0;
          }
          asked = SLAB - slabUsed;
          n = s.read(slabView as Buffer, slabUsed, asked);
        }
      } catch (e) {
        sock.destroy(e as Error);
        return;
      }
      if (n === null) return;
      sock._unrefTimer();
      if (n === 0) {
        this.reading = false;
        // End of stream: the same order of events as Node's onStreamRead (end, then close).
        if (!sock.readableEnded) {
          sock.push(null);
          sock.read(0);
        }
        return;
      }
      this.bytesRead += n;
      if (!chunk) {
        chunk = Buffer.from(slab as ArrayBuffer, slabUsed, n);
        slabUsed += (n + 7) & ~7;
      }
      this.bigReads = n >= BIG_READ;
      if (!sock.push(chunk)) {
        this.reading = false;
        return;
      }
      if (!drain && n < asked) return;
    }
  }

  shutdown(_req: unknown): number {
    if (!this.session) return -107; // ENOTCONN
    try {
      this.session.end();
    } catch {
      /* already shut or reset: nothing more to send */
    }
    return 1; // finished synchronously
  }

  close(cb?: () => void): void {
    this.finish('close', cb);
  }

  reset(cb?: () => void): number {
    this.finish('reset', cb);
    return 0;
  }

  /** Close or reset the session once (a second call, or one after the peer went, is harmless). */
  private finish(how: 'close' | 'reset', cb: (() => void) | undefined): void {
    if (!this.closed) {
      this.closed = true;
      this.reading = false;
      try {
        this.session?.[how]();
      } catch {
        /* already gone */
      }
    }
    // A kernel handle's close callback runs on a later loop turn (after the 'error' that
    // destroy(err) schedules on the tick queue): keep that order.
    if (cb) setImmediate(cb);
  }

  getsockname(out: Record<string, unknown>): number {
    if (!this.localKnown) return -9; // EBADF, as for a TCP handle without a socket yet
    Object.assign(out, this.local);
    return 0;
  }

  getpeername(out: Record<string, unknown>): number {
    Object.assign(out, this.remote);
    return 0;
  }

  setNoDelay(_on: boolean): number {
    return 0; // no Nagle in shared memory: every write is visible at once
  }

  setKeepAlive(_on: boolean, _delay: number): number {
    return 0; // a dead peer is noticed by its control channel, not by probes
  }

  ref(): void {
    this.refed = true;
    this.session?.ref();
  }

  unref(): void {
    this.refed = false;
    this.session?.unref();
  }

  hasRef(): boolean {
    return this.refed;
  }
}

/**
 * net.Socket's write path and resetAndDestroy, for every socket: a socket on a SessionHandle writes
 * into its session - what fits goes in at once; the rest waits for 'writable'; the callback runs
 * when every byte is in the fifo (so the Writable's own buffering gives write() === false and
 * 'drain' exactly as over TCP) - and any other goes to net. Installed once on the prototype, so a
 * connection adds no closures or properties to its socket (and a socket connected again after a
 * close needs no bookkeeping). Returns the uninstaller.
 */
export function installSessionWriter(proto: Socket): () => void {
  const p = proto as SocketInternals;
  const netWriteGeneric = p._writeGeneric;
  const netResetAndDestroy = p.resetAndDestroy;
  p._writeGeneric = function vlsWriteGeneric(this: SocketInternals, writev, data, encoding, cb): void {
    const handle = this._handle;
    // Not ours, or still connecting: net defers the write until 'connect' and re-enters here.
    if (!(handle instanceof SessionHandle) || this.connecting) {
      netWriteGeneric.call(this, writev, data, encoding, cb);
      return;
    }
    sessionWrite(this, handle, writev, data, encoding, cb);
  };
  // net's resetAndDestroy insists on a TCP handle; a SessionHandle is TCP's stand-in, so do the
  // same (wait for the connection, then destroy with a reset).
  p.resetAndDestroy = function vlsResetAndDestroy(this: SocketInternals): SocketInternals {
    if (!(this._handle instanceof SessionHandle)) return netResetAndDestroy.call(this) as SocketInternals;
    const reset = (): void => {
      (this as unknown as { resetAndClosing: boolean }).resetAndClosing = true;
      this.destroy();
    };
    if (this.connecting) this.once('connect', reset);
    else reset();
    return this;
  };
  return () => {
    p._writeGeneric = netWriteGeneric;
    p.resetAndDestroy = netResetAndDestroy;
  };
}

/** A write on a connected socket whose handle is a SessionHandle. */
function sessionWrite(
  sock: SocketInternals,
  handle: SessionHandle,
  writev: boolean,
  data: unknown,
  encoding: BufferEncoding,
  cb: (err?: Error) => void,
): void {
  sock._pendingData = null;
  sock._pendingEncoding = '';
  const session = handle.session;
  if (!session || sock.destroyed) {
    cb(socketClosed());
    return;
  }
  sock._unrefTimer();
  // Bytes count as written once handed to the session, as with a kernel handle's write request
  // (the part still waiting for room included).
  if (!writev) {
    // The common case, one buffer that fits: one native call, nothing allocated.
    const b = typeof data === 'string' ? Buffer.from(data, encoding) : (data as Buffer);
    handle.bytesWritten += b.length;
    let n: number;
    try {
      n = session.write(b, 0, b.length);
    } catch (e) {
      cb(e as Error);
      return;
    }
    if (n === b.length) cb();
    else writeRest(handle, session, [b.subarray(n)], b.length - n, cb);
    return;
  }
  const bufs: Buffer[] = [];
  let queued = 0;
  const list = data as ({ chunk: Buffer | string; encoding: BufferEncoding } | Buffer)[];
  for (const el of list) {
    const b = Buffer.isBuffer(el) ? el : typeof el.chunk === 'string' ? Buffer.from(el.chunk, el.encoding) : el.chunk;
    bufs.push(b);
    queued += b.length;
  }
  handle.bytesWritten += queued;
  writeRest(handle, session, bufs, queued, cb);
}

/**
 * Write `bufs` (`pending` bytes in all) as one multi-segment enqueue per attempt: what fits goes
 * in now; the remainder waits for 'writable'; cb runs once every byte is in the fifo, or with the
 * session's error (EPIPE, ECONNRESET, ...).
 */
function writeRest(handle: SessionHandle, session: VlsSession, bufs: Buffer[], pending: number, cb: (err?: Error) => void): void {
  // Returns true when every byte is in the fifo, false when it must wait for room; throws.
  const step = (): boolean => {
    if (pending === 0) return true;
    let n = session.writev(bufs);
    pending -= n;
    if (pending === 0) return true;
    // Drop what went in from the front of the list.
    let i = 0;
    while (n >= (bufs[i] as Buffer).length) n -= (bufs[i++] as Buffer).length;
    bufs = bufs.slice(i);
    if (n > 0) bufs[0] = (bufs[0] as Buffer).subarray(n);
    return false;
  };
  const onWritable = (): void => {
    let done: boolean;
    try {
      done = step();
    } catch (e) {
      session.off('writable', onWritable);
      handle.writeQueueSize = 0;
      cb(e as Error);
      return;
    }
    handle.writeQueueSize = pending;
    if (done) {
      session.off('writable', onWritable);
      cb();
    }
  };
  let done: boolean;
  try {
    done = step();
  } catch (e) {
    cb(e as Error);
    return;
  }
  if (done) {
    cb();
    return;
  }
  handle.writeQueueSize = pending;
  session.on('writable', onWritable);
}

/** The error net gives a write or reset on a socket that has no connection any more. */
function socketClosed(): Error {
  return Object.assign(new Error('Socket is closed'), { code: 'ERR_SOCKET_CLOSED' });
}
