/**
 * The low-level TypeScript API over the native session layer: a worker per thread, attached to a
 * namespace; listeners published in the namespace registry; cut-through sessions to them.
 *
 * Events flow from the addon in batches: one JS call per wake-up of the worker's fd, carrying
 * every accept / connected / connect-failed / IO record gathered by the native side.
 *
 * @example
 * ```ts
 * const w = attach();
 * const l = w.listen({ address: '127.0.0.1', port: 5000 });
 * l.on('connection', (s) => s.on('readable', () => { ... s.read(buf) ... }));
 * const c = w.connect({ address: '127.0.0.1', port: 5000 });   // undefined: nobody published
 * c?.on('connect', () => c.write(Buffer.from('hi')));
 * ```
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { debuglog } from 'node:util';

import { readConfig, type VlsConfig } from './config';
import { errnoException, VlsError } from './errors';
import { endpointTag, namespaceDir, namespaceRoot, Registry, type EndpointEntry, type Proto } from './namespace';
import { loadNative, type NativeBinding, type NativeSessionInfo, type NativeWorker } from './native';

const debug = debuglog('vls');

/** Epoll bits as the native layer reports them (Linux values). */
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;

const AE_ACCEPT = 1;
const AE_CONNECTED = 2;
const AE_CONNECT_FAILED = 3;
const AE_IO = 4;
const AE_PEER_DOWN = 5;
const AE_STAT = 6;

const EAGAIN = -11;

/** Something that holds the event loop open while it is ref'd (the default), like a handle. */
abstract class Refable extends EventEmitter {
  private refed = true;

  constructor() {
    super();
    // No listener table until a listener comes: EventEmitter makes an empty dictionary-mode object
    // for every emitter (about 220 bytes, kept for the emitter's life), and the net patch's
    // sessions never get a listener. Node's EventEmitter takes _events === undefined as "none yet"
    // everywhere (on, emit, listenerCount, removeListener, ...), as for an emitter whose
    // constructor never ran.
    (this as unknown as { _events: unknown })._events = undefined;
  }
  /** @internal */
  protected abstract readonly owner: VlsWorker;

  /** Keep the event loop alive while this is open (the default). */
  ref(): this {
    if (!this.refed) {
      this.refed = true;
      this.owner.adjustRef(1);
    }
    return this;
  }

  /** Let the process exit even if this is open. */
  unref(): this {
    if (this.refed) {
      this.refed = false;
      this.owner.adjustRef(-1);
    }
    return this;
  }

  /** @internal */
  get isRefed(): boolean {
    return this.refed;
  }
}

/**
 * What takes a session's events instead of its listeners ({@link VlsSession.reader}): read
 * readiness in place of 'readable' and, while a connect is pending, its outcome in place of
 * 'connect' and 'error'.
 */
export interface SessionReader {
  onReadable(events: number): void;
  onConnect?(): void;
  onConnectError?(err: NodeJS.ErrnoException): void;
}

/** A cut-through session: a non-blocking byte stream to another worker. */
export class VlsSession extends Refable {
  /** The native session handle (unique within the worker; never reused while stale). */
  readonly handle: number;
  /** Metadata the other end sent when the session was set up. */
  peerMeta: Buffer | undefined;
  /** 'connecting' | 'open' | 'closed'. */
  status: 'connecting' | 'open' | 'closed';
  /** @internal Readiness that came before 'connect' (or in the same turn after it), delivered
   * after 'connect' (see announce): the application attaches its 'readable' listener on
   * 'connect', and readiness is not reported twice. -1 from then on, and for accepted sessions. */
  early: number;
  /** @internal The one consumer of this session's events, called in place of emitting them (the
   * net patch's: no listener, closure or listener table per connection, no emit per event). */
  reader: SessionReader | undefined;
  private readonly worker: VlsWorker;
  /** @internal */
  protected get owner(): VlsWorker {
    return this.worker;
  }

  /** @internal */
  constructor(worker: VlsWorker, handle: number, status: 'connecting' | 'open', accepted: boolean) {
    super();
    this.worker = worker;
    this.handle = handle;
    this.status = status;
    this.early = accepted ? -1 : 0;
    this.reader = undefined;
  }

  /**
   * Writes as much of `buf` as fits; returns the bytes taken (0 when the fifo is full: wait for
   * 'writable'). Throws a Node-style error (EPIPE after end(), ECONNRESET after a reset, EBADF
   * after close()).
   */
  write(buf: Uint8Array, offset = 0, length = buf.byteLength - offset): number {
    const rv = this.worker.native.write(this.handle, buf, offset, length);
    if (rv === EAGAIN) return 0;
    if (rv < 0) throw errnoException(rv, 'write');
    return rv;
  }

  /** Writes several buffers as one unit; with allOrNothing, all of them or none (returns 0). */
  writev(bufs: Uint8Array[], allOrNothing = false): number {
    const rv = this.worker.native.writev(this.handle, bufs, allOrNothing);
    if (rv === EAGAIN) return 0;
    if (rv < 0) throw errnoException(rv, 'write');
    return rv;
  }

  /**
   * Reads into `buf`; returns the byte count, 0 at end of stream, or null when nothing is there
   * yet (wait for 'readable'). Throws the pending error once (ECONNRESET after a peer reset).
   */
  read(buf: Uint8Array, offset = 0, length = buf.byteLength - offset): number | null {
    const rv = this.worker.native.read(this.handle, buf, offset, length);
    if (rv === EAGAIN) return null;
    if (rv < 0) throw errnoException(rv, 'read');
    return rv;
  }

  /**
   * Reads up to 64 KiB into a Buffer of the layer's own (its memory is reused once the Buffer is
   * garbage); returns it, 0 at end of stream, or null when nothing is there yet. Throws as read().
   */
  readChunk(): Buffer | 0 | null {
    const rv = this.worker.native.readChunk(this.handle);
    if (typeof rv !== 'number') return rv;
    if (rv === EAGAIN) return null;
    if (rv < 0) throw errnoException(rv, 'read');
    return 0;
  }

  /** Half-close: the peer reads everything written so far, then end of stream. */
  end(): void {
    const rv = this.worker.native.shutdown(this.handle, 1);
    if (rv < 0) throw errnoException(rv, 'shutdown');
  }

  /** Close: end of stream after queued data (unread received data turns it into a reset). */
  close(): void {
    if (this.status === 'closed') return;
    const rv = this.worker.native.close(this.handle);
    this.worker.forget(this);
    if (rv < 0) throw errnoException(rv, 'close');
    this.emit('close');
  }

  /** Reset: queued data is dropped and the peer's next read fails with ECONNRESET. */
  reset(): void {
    if (this.status === 'closed') return;
    const rv = this.worker.native.reset(this.handle);
    this.worker.forget(this);
    if (rv < 0) throw errnoException(rv, 'reset');
    this.emit('close');
  }

  /** State, fifo fill and byte counts, from the native session table. */
  info(): NativeSessionInfo {
    const r = this.worker.native.info(this.handle);
    if (typeof r === 'number') throw errnoException(r, 'info');
    return r;
  }

}

/** A published listening endpoint. Emits 'connection' with each accepted VlsSession. */
export class VlsListener extends Refable {
  readonly handle: number;
  readonly entry: EndpointEntry;
  private readonly worker: VlsWorker;
  closed = false;
  /** @internal */
  protected get owner(): VlsWorker {
    return this.worker;
  }

  /** @internal */
  constructor(worker: VlsWorker, handle: number, entry: EndpointEntry) {
    super();
    this.worker = worker;
    this.handle = handle;
    this.entry = entry;
  }

  /** Unpublish and close; connections not yet accepted are reset. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.worker.registry.unpublish(this.entry);
    this.worker.native.close(this.handle);
    this.worker.forgetListener(this);
    this.emit('close');
  }
}

/** Options of {@link VlsWorker.listen}. */
export interface ListenOptions {
  proto?: Proto;
  address: string;
  port: number;
  backlog?: number;
  /** An IPv6 wildcard listener that takes no IPv4 connections (listen's ipv6Only). */
  v6only?: boolean;
}

/** Options of {@link VlsWorker.connect}. */
export interface ConnectOptions {
  proto?: Proto;
  address: string;
  port: number;
  /** Up to 128 bytes handed to the acceptor with the connection. */
  meta?: Buffer;
  /** The registry entry of the endpoint, when the caller has just looked it up. */
  entry?: EndpointEntry;
}

/** This thread's attachment to a namespace. */
export class VlsWorker {
  readonly index: number;
  readonly config: VlsConfig;
  readonly dir: string;
  readonly registry: Registry;
  /** @internal */
  readonly native: NativeWorker;
  private readonly sessions = new Map<number, VlsSession>();
  private readonly listeners = new Map<number, VlsListener>();
  /** connect()'s second answer: whether the session is connected now. */
  private readonly connectOut = new Float64Array(1);
  private refs = 0;
  private detached = false;

  /** @internal */
  constructor(binding: NativeBinding, config: VlsConfig) {
    this.config = config;
    this.dir = namespaceDir(namespaceRoot(config.runtimeDir), config.namespace);
    this.registry = new Registry(this.dir, binding);
    this.native = new binding.Worker();
    const secret = config.secret
      ? createHash('sha256').update(`node-vls:${config.secret}`).digest()
      : Buffer.alloc(32);
    const rv = this.native.attach(
      this.dir,
      config.fifoSize,
      config.segmentSize,
      config.mqSize,
      secret,
      (n, metas, d) => this.onEvents(n, metas, d),
      config.pollUsec,
      config.pollAuto,
    );
    if (rv < 0) {
      throw new VlsError('ERR_VLS_ATTACH_FAILED', `node-vls: cannot attach to namespace ${config.namespace} in ${this.dir}`, {
        cause: errnoException(rv, 'attach', this.dir),
      });
    }
    this.index = rv;
    debug('worker %d attached to %s', this.index, this.dir);
  }

  /** Every batch of native events lands here: n records of [type, events, handle, handle2,
   * err] in a Float64Array the addon reuses, plus metadata Buffers where an event carries some.
   * A handler that throws does not cost the other events of the batch their turn: they all go
   * out, then the first exception is thrown (uncaught, as from a socket's callback) and any
   * further ones from the tick queue. */
  private onEvents(n: number, metas: Buffer[] | undefined, d: Float64Array): void {
    let failed = false;
    let first: unknown;
    for (let i = 0; i < n; i++) {
      const o = i * 5;
      try {
        this.dispatch(d[o] as number, d[o + 1] as number, d[o + 2] as number, d[o + 3] as number, d[o + 4] as number, metas?.[i]);
      } catch (e) {
        if (!failed) {
          failed = true;
          first = e;
        } else {
          process.nextTick(rethrow, e);
        }
      }
    }
    if (failed) throw first;
  }

  private dispatch(type: number, events: number, h: number, h2: number, err: number, meta: Buffer | undefined): void {
    if (type === AE_IO) {
      const s = this.sessions.get(h);
      if (!s) return;
      // A connect the acceptor reset (or wrote to, or closed) before its answer reached us.
      if (s.early >= 0) s.early |= events;
      else this.ready(s, events);
    } else if (type === AE_ACCEPT) {
      const l = this.listeners.get(h);
      if (!l) {
        this.native.reset(h2);
        return;
      }
      const s = new VlsSession(this, h2, 'open', true);
      s.peerMeta = meta;
      this.track(s);
      l.emit('connection', s);
    } else if (type === AE_CONNECTED) {
      const s = this.sessions.get(h);
      if (!s) return;
      s.status = 'open';
      s.peerMeta = meta;
      this.announce(s);
    } else if (type === AE_CONNECT_FAILED) {
      const s = this.sessions.get(h);
      if (!s) return;
      this.native.close(h);
      this.forget(s);
      const e = errnoException(err, 'connect');
      const r = s.reader;
      if (r?.onConnectError) r.onConnectError(e);
      else s.emit('error', e);
      s.emit('close');
    } else if (type === AE_PEER_DOWN) {
      debug('peer worker %d down (%d)', h, err);
    } else if (type === AE_STAT) {
      this.native.statReply(h, h2, this.snapshotJson());
    }
  }

  private ready(s: VlsSession, events: number): void {
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
      const r = s.reader;
      if (r !== undefined) r.onReadable(events);
      else s.emit('readable', events);
    }
    if (s.status === 'open' && events & EPOLLOUT) s.emit('writable');
  }

  /** 'connect' (to the reader, if the session has one), then the readiness that came before it:
   * at once to a reader or to a 'readable' listener attached on 'connect'; otherwise with whatever
   * more comes in this turn of the loop, from its check phase, once the application could act on
   * 'connect' (a listener attached after `await once(session, 'connect')` included). */
  private announce(s: VlsSession): void {
    const r = s.reader;
    if (r?.onConnect) r.onConnect();
    else s.emit('connect');
    if (s.reader !== undefined || s.listenerCount('readable') > 0) this.flushEarly(s);
    else setImmediate(() => this.flushEarly(s));
  }

  private flushEarly(s: VlsSession): void {
    const early = s.early;
    s.early = -1;
    if (early > 0 && s.status === 'open') this.ready(s, early);
  }

  /** @internal */
  track(s: VlsSession): void {
    this.sessions.set(s.handle, s);
    if (s.isRefed) this.adjustRef(1);
  }

  /** @internal */
  forget(s: VlsSession): void {
    if (s.status === 'closed') return;
    s.status = 'closed';
    this.sessions.delete(s.handle);
    if (s.isRefed) this.adjustRef(-1);
  }

  /** @internal */
  forgetListener(l: VlsListener): void {
    if (this.listeners.delete(l.handle) && l.isRefed) this.adjustRef(-1);
  }

  /** @internal */
  adjustRef(d: number): void {
    const before = this.refs;
    this.refs += d;
    if ((before > 0) !== (this.refs > 0)) this.native.setRef(this.refs > 0);
  }

  /** Publish a listening endpoint (the caller owns the kernel address already, as listen() does). */
  listen(opts: ListenOptions): VlsListener {
    if (this.detached) throw new VlsError('ERR_VLS_DETACHED', 'node-vls: worker is detached');
    checkEndpoint(opts.address, opts.port);
    const backlog = opts.backlog ?? 511;
    const lh = this.native.listen(backlog, endpointTag(opts.proto ?? 'tcp', opts.port));
    if (lh < 0) throw errnoException(lh, 'listen', opts.address, opts.port);
    const entry: EndpointEntry = {
      proto: opts.proto ?? 'tcp',
      address: opts.address,
      port: opts.port,
      worker: this.index,
      pid: process.pid,
      sock: (this.native.stats() as { sockPath: string }).sockPath,
      lh,
    };
    if (opts.v6only) entry.v6only = true;
    const l = new VlsListener(this, lh, entry);
    this.listeners.set(lh, l);
    this.adjustRef(1);
    this.registry.publish(entry);
    return l;
  }

  /**
   * Start a cut-through connection to a published endpoint. Returns undefined when nobody in the
   * namespace published it (the caller uses the kernel). The session emits 'connect', or 'error'
   * then 'close' (ECONNREFUSED: the publishing worker is gone; EACCES: its secret differs).
   *
   * To a listener that accepted from this worker before, the session is connected at once, as a
   * loopback TCP connect completes inside connect(): 'connect' comes on this turn of the loop (its
   * check phase), and bytes written from then on reach the acceptor when it takes the connection.
   * If that listener closed meanwhile, the session is then reset (a read throws ECONNRESET), as by
   * a kernel listener that closes with connections it did not accept. A connect to a listener not
   * known yet waits for its answer.
   */
  connect(opts: ConnectOptions): VlsSession | undefined {
    if (this.detached) throw new VlsError('ERR_VLS_DETACHED', 'node-vls: worker is detached');
    checkEndpoint(opts.address, opts.port);
    const meta = opts.meta ?? Buffer.alloc(0);
    if (meta.length > 128) throw new RangeError('meta must be at most 128 bytes');
    const e = opts.entry ?? this.registry.lookup(opts.proto ?? 'tcp', opts.address, opts.port);
    if (!e) return undefined;
    const out = this.connectOut;
    const ch = this.native.connect(e.sock, e.lh, endpointTag(e.proto, e.port), meta, out);
    if (ch < 0) throw errnoException(ch, 'connect', opts.address, opts.port);
    const now = out[0] === 1;
    const s = new VlsSession(this, ch, now ? 'open' : 'connecting', false);
    this.track(s);
    if (now)
      setImmediate(() => {
        if (s.status === 'open') this.announce(s);
      });
    return s;
  }

  /**
   * What `vls stat` shows for this worker. The net patch installs a richer provider (every socket
   * it saw, with its transport and why); without it, the native sessions are listed.
   */
  statProvider: (() => unknown[]) | undefined;

  /** @internal */
  snapshotJson(): string {
    let sessions: unknown[];
    try {
      sessions = this.statProvider
        ? this.statProvider()
        : [...this.sessions.values()].map((s) => ({ transport: 'cut-through', handle: s.handle, ...s.info() }));
    } catch (e) {
      sessions = [{ error: (e as Error).message }];
    }
    const base = { pid: process.pid, worker: this.index, namespace: this.config.namespace, stats: this.stats() };
    let json = JSON.stringify({ ...base, sessions });
    // One control message carries the answer: keep it under the socket's buffer.
    if (json.length > 150_000) {
      const keep = Math.max(0, Math.floor(sessions.length * (150_000 / json.length)) - 1);
      json = JSON.stringify({ ...base, sessions: sessions.slice(0, keep), truncated: sessions.length - keep });
    }
    return json;
  }

  /** Counters of the native worker. */
  stats(): ReturnType<NativeWorker['stats']> {
    return this.native.stats();
  }

  /** Close everything (peers see resets), unpublish, and leave the namespace. */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    for (const l of [...this.listeners.values()]) l.close();
    for (const s of [...this.sessions.values()]) this.forget(s);
    this.native.detach();
    if (current === this) current = undefined;
  }
}

function rethrow(e: unknown): never {
  throw e;
}

function checkEndpoint(address: string, port: number): void {
  if (typeof address !== 'string' || address.length === 0) {
    throw new TypeError(`address must be a non-empty string, got ${JSON.stringify(address)}`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`port must be an integer from 0 to 65535, got ${String(port)}`);
  }
}

let current: VlsWorker | undefined;

/** Attach this thread to its namespace (once; later calls return the same worker). */
export function attach(env: NodeJS.ProcessEnv = process.env): VlsWorker {
  if (current) return current;
  const cfg = readConfig(env);
  current = new VlsWorker(loadNative(), cfg);
  // Leave the namespace while JS can still run: peers see resets at once and our files go.
  process.once('exit', () => current?.detach());
  return current;
}

/** The attached worker of this thread, if any. */
export function currentWorker(): VlsWorker | undefined {
  return current;
}
