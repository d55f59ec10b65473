/**
 * The `net` patch: every TCP listen publishes a cut-through endpoint after the kernel bind, and
 * every TCP connect to a published endpoint becomes a cut-through session, under a genuine
 * net.Socket. Everything else (Unix paths, IPC pipes, fd/handle listens, peers nobody published)
 * goes to the original code untouched.
 *
 *   listen(): original listen (kernel port, EADDRINUSE, port 0 as always) -> 'listening' ->
 *             publish { tcp, address, port } -> cut-through connections arrive as 'connection'
 *             with a net.Socket on a SessionHandle, counted, limited and published on
 *             diagnostics_channel like kernel ones.
 *   connect(): what net's connect does, step for step, on a SessionHandle when the address net
 *             would try first is published: an IP is looked up in the registry at once (not
 *             published: the original connect, untouched); a name is resolved with net's own
 *             lookup options and 'lookup' events (not published: the original connect, with the
 *             answer replayed, no second lookup). On the next tick, as net's internalConnect:
 *             localAddress/localPort bound for real (a kernel bind, so conflicts fail as in net),
 *             'connectionAttempt', the session connect. A listener that refuses (gone meanwhile)
 *             sends the connect to the kernel, which serves or refuses it as without the layer.
 *   addresses: as the kernel shows them on loopback (0.0.0.0 and :: dial this host, 127/8 is
 *             reached from 127.0.0.1, a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d).
 *   cluster:  the primary's round-robin listener is not published; each worker publishes when it
 *             gets 'listening' (one entry per address: the last worker to listen is named).
 */
import * as dc from 'node:diagnostics_channel';
import * as dns from 'node:dns';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { debuglog } from 'node:util';

import { errnoException } from './errors';
import { installSessionWriter, SessionHandle, type SockAddr } from './session-handle';
import type { EndpointEntry } from './namespace';
import type { VlsListener, VlsSession, VlsWorker } from './worker';

const debug = debuglog('vls');
const serverChannel = dc.channel('net.server.socket');

/** Why a connection took the transport it took (visible in `vls stat`). */
export type TransportReason = 'published' | 'not-published' | 'error';

const kVls = Symbol('vls.listener');
const listening = new Set<ServerX>();
const kV6Only = Symbol('vls.v6only');
const kDualStack = Symbol('vls.dualStack');

type ServerX = net.Server & {
  [kVls]?: VlsListener;
  [kV6Only]?: boolean;
  /** Whether the published address is IPv6 (peers are shown as a dual-stack socket shows them). */
  [kDualStack]?: boolean;
  _connections: number;
  allowHalfOpen: boolean;
  pauseOnConnect: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
  highWaterMark?: number;
};

type SocketX = Omit<net.Socket, 'connecting'> & {
  connecting: boolean;
  _handle: unknown;
  _peername: unknown;
  _sockname: unknown;
  _host: string | null;
  _parent: { connecting?: boolean } | null;
  _unrefTimer(): void;
  server?: net.Server;
  _server?: net.Server;
};

type NormalizedArgs = [Record<string, unknown>, ((...a: unknown[]) => void) | null] & { [k: symbol]: unknown };

let ephemeral = 32768 + Math.floor(Math.random() * 28000);
function nextLocalPort(): number {
  ephemeral = ephemeral >= 60999 ? 32768 : ephemeral + 1;
  return ephemeral;
}

/** The family of an IP address (or of a host name: IPv4, as net shows one before it is resolved);
 * only IPv6 addresses contain a colon, so no parse is needed. */
function familyOf(address: string): 'IPv4' | 'IPv6' {
  return address.includes(':') ? 'IPv6' : 'IPv4';
}

/** The IPv4 address inside a v4-mapped IPv6 one (::ffff:127.0.0.1), else undefined. */
function unmapped(address: string): string | undefined {
  if (!address.startsWith('::')) return undefined;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m?.[1] !== undefined && net.isIPv4(m[1]) ? m[1] : undefined;
}

/** An IP address as a listener of that family shows it (see onSessionConnection). */
function peerView(a: string, v6: boolean): string {
  if (v6) return a.includes(':') ? a : `::ffff:${a}`;
  return unmapped(a) ?? a;
}

/** Where a connect really goes: the kernel takes 0.0.0.0 and :: to mean this host. */
function effectiveDestination(address: string): string {
  if (address === '0.0.0.0') return '127.0.0.1';
  if (address === '::' || address === '::0') return '::1';
  return address;
}

/** The source address the kernel picks for a local destination: 127.0.0.1 for all of 127/8. */
function sourceFor(dst: string): string {
  const v4 = dst.includes(':') ? unmapped(dst) : dst;
  if (v4 === undefined || !v4.startsWith('127.')) return dst;
  return v4 === dst ? '127.0.0.1' : '::ffff:127.0.0.1';
}

/** The address a listener is published under that a connect to dst reaches (a v4-mapped
 * destination reaches IPv4 listeners, as in the kernel). */
function lookupAddress(dst: string): string {
  return unmapped(dst) ?? dst;
}

function findEndpoint(worker: VlsWorker, address: string, port: number): EndpointEntry | undefined {
  return worker.registry.lookup('tcp', lookupAddress(effectiveDestination(address)), port);
}

/**
 * Whether net's connect would throw on these options (then net runs, and throws its own error).
 * The checks of lookupAndConnect, in its order.
 */
function netWouldThrow(o: Record<string, unknown>, host: string, hostIsIP: boolean): boolean {
  const port = o.port;
  if (typeof port !== 'number' && typeof port !== 'string') return true;
  if (typeof port === 'string' && port.trim() === '') return true;
  const p = Number(port);
  if (p !== p >>> 0 || p > 65535) return true;
  if (o.localAddress && !(typeof o.localAddress === 'string' && net.isIP(o.localAddress))) return true;
  if (o.localPort && typeof o.localPort !== 'number') return true;
  if (o.autoSelectFamily != null && typeof o.autoSelectFamily !== 'boolean') return true;
  const t = o.autoSelectFamilyAttemptTimeout;
  if (t != null && !(typeof t === 'number' && Number.isInteger(t) && t >= 1 && t <= 2147483647)) return true;
  if (!hostIsIP && o.lookup != null && typeof o.lookup !== 'function') return true;
  return false;
}

/**
 * The port of a TCP connect, read straight from connect()'s arguments (net's normalized array, an
 * options object, or a port number or string); undefined for anything else - a path, port 0, a
 * bad port, a user read buffer - which the full path sorts out as net would.
 */
function quickPort(args: unknown[]): number | undefined {
  let a = args[0];
  if (Array.isArray(a)) a = a[0];
  let p: unknown;
  if (typeof a === 'object' && a !== null) {
    const o = a as Record<string, unknown>;
    if (o.path != null || o.onread != null) return undefined;
    p = o.port;
  } else {
    p = a;
  }
  if (typeof p !== 'number' && typeof p !== 'string') return undefined;
  const n = Number(p);
  return Number.isInteger(n) && n > 0 && n <= 65535 && (typeof p === 'number' || p.trim() !== '') ? n : undefined;
}

/** A socket that reads into the application's own buffer (the `onread` option) needs a kernel
 * handle's useUserBuffer: it stays on the kernel. */
function hasUserBuffer(o: Record<string, unknown>): boolean {
  const r = o.onread as { buffer?: unknown; callback?: unknown } | null | undefined;
  return typeof r === 'object' && r !== null && typeof r.callback === 'function';
}

function isLookupAddress(a: unknown): a is { address: string; family: number } {
  return typeof a === 'object' && a !== null && typeof (a as { address?: unknown }).address === 'string';
}

/** The order net's family autoselection tries addresses in: valid ones, each once, families
 * alternating, starting with the family of the first. */
function attemptOrder(addresses: { address: string; family: number }[]): { address: string; family: number }[] {
  const groups: { address: string; family: number }[][] = [[], []];
  let firstFamily: number | undefined;
  const seen = new Set<string>();
  for (const a of addresses) {
    if (!net.isIP(a.address) || (a.family !== 4 && a.family !== 6)) continue;
    firstFamily ??= a.family;
    if (seen.has(a.address)) continue;
    seen.add(a.address);
    (groups[a.family === firstFamily ? 0 : 1] as { address: string; family: number }[]).push(a);
  }
  const [g0, g1] = groups as [{ address: string; family: number }[], { address: string; family: number }[]];
  const out: { address: string; family: number }[] = [];
  for (let i = 0; i < Math.max(g0.length, g1.length); i++) {
    if (i < g0.length) out.push(g0[i] as { address: string; family: number });
    if (i < g1.length) out.push(g1[i] as { address: string; family: number });
  }
  return out;
}

/** The handle a socket had while the layer decided is replaced: an unref() made meanwhile holds. */
function carryRef(from: SessionHandle, socket: SocketX): void {
  const h = socket._handle as { unref?: () => void } | null;
  if (!from.hasRef() && h && typeof h.unref === 'function') h.unref();
}

/** Swallow the next emission of one event on this socket (then emit is the socket's own again). */
function skipNextEmit(socket: SocketX, event: string): void {
  const own = Object.prototype.hasOwnProperty.call(socket, 'emit');
  const prev = socket.emit;
  const restore = (): void => {
    if (own) socket.emit = prev;
    else delete (socket as { emit?: unknown }).emit;
  };
  socket.emit = function skipOnce(this: SocketX, ev: string | symbol, ...a: unknown[]): boolean {
    if (ev === 'close') restore();
    if (ev !== event) return (prev as (e: string | symbol, ...r: unknown[]) => boolean).call(this, ev, ...a);
    restore();
    return this.listenerCount(ev) > 0;
  } as typeof socket.emit;
}

/** A bound, unconnected kernel TCP handle: holds a local address and port for a cut-through
 * connection that asked for them, so that they are really reserved (and conflicts fail as in net). */
interface BoundHandle {
  getsockname(out: object): number;
  close(): void;
}
const UV_EADDRINUSE = -98;
function createServerHandle(address: string, port: number, addressType: 4 | 6): BoundHandle | number {
  // net's own helper (the one cluster uses): a TCP handle bound to address:port, not listening.
  const create = (net as unknown as { _createServerHandle(a: string, p: number, t: number): BoundHandle | number })._createServerHandle;
  return create(address, port, addressType);
}

interface ConnMeta {
  a: string; // connector's address
  p: number; // connector's port
  da: string; // destination address as the connector dialled it
  dp: number;
}

/**
 * What a connector tells the acceptor, in the CONNECT message: [p u16][dp u16][len u8][a][len u8]
 * [da] (ports little-endian, addresses as ASCII text; at most 4 + 2 * 46 bytes, within the
 * 128 the message carries). Binary, not JSON: parsing it was a twentieth of an acceptor's CPU per
 * connection.
 */
function encodeMeta(m: ConnMeta): Buffer {
  const b = Buffer.allocUnsafe(6 + m.a.length + m.da.length);
  b.writeUInt16LE(m.p, 0);
  b.writeUInt16LE(m.dp, 2);
  b[4] = m.a.length;
  b.write(m.a, 5, 'latin1');
  b[5 + m.a.length] = m.da.length;
  b.write(m.da, 6 + m.a.length, 'latin1');
  return b;
}

/** The connector's metadata, or undefined if `b` is not what encodeMeta makes. */
function decodeMeta(b: Buffer | undefined): ConnMeta | undefined {
  if (!b || b.length < 6) return undefined;
  const al = b[4] as number;
  if (6 + al > b.length) return undefined;
  const dal = b[5 + al] as number;
  if (6 + al + dal !== b.length || al === 0 || dal === 0) return undefined;
  return { p: b.readUInt16LE(0), dp: b.readUInt16LE(2), a: b.toString('latin1', 5, 5 + al), da: b.toString('latin1', 6 + al, 6 + al + dal) };
}

/** A pending connect's reader reads nothing: readiness before the outcome is held until after
 * it, when the socket's handle is the reader (or the session was closed, its socket gone). */
function ignoreReadiness(): void {}

/** Whether this listen() call comes from cluster's round-robin handle in the primary. */
function inClusterRoundRobin(): boolean {
  if (process.env.NODE_UNIQUE_ID !== undefined) return false; // a cluster worker, or a fork of one
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 16;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  return stack.includes('internal/cluster/round_robin_handle');
}

/**
 * The sockets this thread has seen (client connects and server connections), for `vls stat`, each
 * with why it took its transport. A socket leaves the map when it is destroyed (net.Socket's
 * _destroy, patched on the prototype). So tracking a connection costs one map insertion and one
 * deletion - no 'close' listener per socket, and no property of ours on it (one would give net's
 * sockets a second hidden class, and its property accesses megamorphic inline caches: measured on
 * the passthrough connect path) - and the map holds no closed socket: one held until a later
 * sweep outlived a young-generation GC or two, and was copied and promoted to the old generation
 * with everything it refers to (the extra GC work showed in the connect benchmark). A socket
 * tracked after its destruction (a server connection that an earlier 'connection' listener
 * destroyed at once, say) is removed by a sweep: when the map has doubled since the last one (at
 * least SWEEP_MIN entries), and before each stat.
 */
const tracked = new Map<SocketX, TransportReason>();
const SWEEP_MIN = 256;
let sweepAt = SWEEP_MIN;
function sweep(): void {
  for (const s of tracked.keys()) if (s.destroyed) tracked.delete(s);
  sweepAt = Math.max(SWEEP_MIN, tracked.size * 2);
}

/** Tracks the socket with the reason for its transport; without a reason, a socket already
 * tracked keeps its own (a new one is 'not-published' until told otherwise). */
function track(socket: SocketX, reason?: TransportReason): void {
  if (reason === undefined && tracked.has(socket)) return;
  tracked.set(socket, reason ?? 'not-published');
  if (tracked.size >= sweepAt) sweep();
}

function describe(s: SocketX, reason: TransportReason): Record<string, unknown> {
  const h = s._handle;
  const row: Record<string, unknown> = {
    transport: h instanceof SessionHandle ? 'cut-through' : 'kernel',
    reason,
    side: s.server ? 'server' : 'client',
    state: s.connecting ? 'connecting' : s.readyState,
    local: `${s.localAddress ?? '?'}:${s.localPort ?? '?'}`,
    remote: `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`,
    bytesRead: s.bytesRead,
    bytesWritten: s.bytesWritten,
  };
  if (h instanceof SessionHandle && h.session && h.session.status !== 'closed') {
    try {
      const i = h.session.info();
      row.session = { state: i.state, rxUsed: i.rxUsed, txUsed: i.txUsed, fifoSize: i.fifoSize };
    } catch {
      /* closed meanwhile */
    }
  }
  return row;
}

/** Install the patch; returns a function that removes it. */
export function installNetPatch(getWorker: () => VlsWorker | undefined, strict: boolean): () => void {
  // The worker attaches on first use, so threads that never touch the network (Node's own
  // loader-hooks thread, a CLI that exits at once) cost nothing and leave nothing behind.
  let attached: VlsWorker | undefined;
  const statProvider = (): unknown[] => {
    const rows: unknown[] = [];
    sweep();
    for (const [s, reason] of tracked) rows.push(describe(s, reason));
    for (const srv of listening) {
      const a = srv.address();
      if (a && typeof a !== 'string') rows.push({ transport: srv[kVls] ? 'published' : 'kernel', side: 'listener', local: `${a.address}:${a.port}`, connections: srv._connections });
    }
    return rows;
  };
  const workerNow = (): VlsWorker | undefined => {
    if (!attached) {
      attached = getWorker();
      if (attached) attached.statProvider = statProvider;
    }
    return attached;
  };
  const proto = net.Socket.prototype as unknown as {
    connect: (...args: unknown[]) => net.Socket;
    _destroy: (this: SocketX, err: Error | null, cb: (err?: Error | null) => void) => void;
  };
  const origConnect = proto.connect;
  const origDestroy = proto._destroy;
  proto._destroy = function vlsDestroy(this: SocketX, err, cb) {
    tracked.delete(this);
    origDestroy.call(this, err, cb);
  };
  const origListen = net.Server.prototype.listen;
  const origClose = net.Server.prototype.close;
  const normalize = (net as unknown as { _normalizeArgs(a: unknown[]): NormalizedArgs })._normalizeArgs;
  // net marks the arrays it normalized with a private symbol (http and net.connect pass those):
  // learn it once from an array net normalizes, so that recognising one is a property load.
  const kNormalized: symbol | undefined = Object.getOwnPropertySymbols(normalize([{ port: 1 }]))[0];

  function publish(server: ServerX): void {
    const addr = server.address();
    if (!addr || typeof addr === 'string' || server[kVls]) return;
    // TLS stays on the kernel for now: its native wrap needs a kernel stream handle.
    if (server instanceof tls.Server) return;
    const worker = workerNow();
    if (!worker) return;
    try {
      const l = worker.listen({ address: addr.address, port: addr.port, v6only: server[kV6Only] === true && addr.address === '::' });
      l.unref(); // the kernel listener already holds the loop (and honours server.unref())
      server[kVls] = l;
      server[kDualStack] = addr.family === 'IPv6';
      l.on('connection', (s: VlsSession) => onSessionConnection(server, s));
      listening.add(server);
      // Kernel connections too (peers that are not intercepted), so `vls stat` lists them.
      server.on('connection', (sock: net.Socket) => track(sock as unknown as SocketX));
      debug('published %s:%d', addr.address, addr.port);
    } catch (e) {
      if (strict) throw e;
      debug('could not publish %s:%d: %s', addr.address, addr.port, (e as Error).message);
    }
  }

  function onSessionConnection(server: ServerX, session: VlsSession): void {
    const meta = decodeMeta(session.peerMeta);
    session.peerMeta = undefined; // read once: not kept for the connection's life
    if (!meta) {
      // Not a connect made by this layer's net patch (the low-level API lets anyone connect).
      session.reset();
      return;
    }
    // Addresses as the listening socket's family shows them: an IPv6 (dual-stack) listener sees an
    // IPv4 peer as ::ffff:a.b.c.d, an IPv4 listener sees a v4-mapped dialler as plain IPv4.
    const v6 = server[kDualStack] === true;
    const la = peerView(meta.da, v6);
    const ra = peerView(meta.a, v6);
    const local: SockAddr = { address: la, family: familyOf(la), port: meta.dp };
    const remote: SockAddr = { address: ra, family: familyOf(ra), port: meta.p };
    const handle = new SessionHandle(session, local, remote);
    if (server.maxConnections && server._connections >= server.maxConnections) {
      server.emit('drop', {
        localAddress: local.address,
        localPort: local.port,
        localFamily: local.family,
        remoteAddress: remote.address,
        remotePort: remote.port,
        remoteFamily: remote.family,
      });
      handle.close();
      return;
    }
    const socket = new net.Socket({
      handle,
      allowHalfOpen: server.allowHalfOpen,
      pauseOnCreate: server.pauseOnConnect,
      readable: true,
      writable: true,
      readableHighWaterMark: server.highWaterMark,
      writableHighWaterMark: server.highWaterMark,
    } as net.SocketConstructorOpts) as SocketX;
    handle.attachSocket(socket);
    track(socket, 'published');
    server._connections++;
    socket.server = server;
    socket._server = server;
    server.emit('connection', socket);
    if (serverChannel.hasSubscribers) serverChannel.publish({ socket });
  }

  net.Server.prototype.listen = function vlsListen(this: ServerX, ...args: unknown[]) {
    if (inClusterRoundRobin()) {
      // The cluster primary's own listener: it hands kernel connections to the workers and has no
      // 'connection' listener of its own. The workers publish (each when it gets 'listening').
      scrubOnWorkerExit();
      return origListen.apply(this, args as Parameters<typeof origListen>);
    }
    const ret = origListen.apply(this, args as Parameters<typeof origListen>);
    const o = args[0] as { ipv6Only?: unknown } | null | undefined;
    this[kV6Only] = typeof o === 'object' && o !== null && o.ipv6Only === true;
    // Published before the application's own 'listening' callbacks run, so a connect made in
    // them already finds the endpoint.
    this.prependOnceListener('listening', () => publish(this));
    return ret;
  } as typeof origListen;

  /**
   * Entries published by cluster workers that died without closing (SIGKILL, SIGTERM) go as soon
   * as the primary hears of the exit, not at the next lookup.
   */
  let scrubbing = false;
  function scrubOnWorkerExit(): void {
    if (scrubbing) return;
    scrubbing = true;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    (require('node:cluster') as import('node:cluster').Cluster).on('exit', () => {
      try {
        workerNow()?.registry.list(); // probes every entry; stale ones are removed
      } catch (e) {
        debug('scrub after a cluster worker exit failed: %s', (e as Error).message);
      }
    });
  }

  net.Server.prototype.close = function vlsClose(this: ServerX, cb?: (err?: Error) => void) {
    const l = this[kVls];
    listening.delete(this);
    if (l) {
      this[kVls] = undefined;
      l.close();
    }
    return origClose.call(this, cb);
  } as typeof origClose;

  proto.connect = function vlsConnect(this: SocketX, ...args: unknown[]): net.Socket {
    // The common case first: a TCP connect to a port nobody in the namespace published goes to
    // the kernel at once, decided by a port-set lookup before anything else is worked out.
    const quick = quickPort(args);
    if (quick !== undefined && !this._handle && !this._parent && !(this instanceof tls.TLSSocket)) {
      const worker = workerNow();
      if (worker && !worker.registry.hasPort(quick)) {
        track(this, 'not-published');
        return origConnect.apply(this, args);
      }
    }
    const first = args[0] as NormalizedArgs & { [k: symbol]: unknown };
    const normalized: NormalizedArgs =
      kNormalized !== undefined && Array.isArray(first) && first[kNormalized] ? first : normalize(args);
    const options = normalized[0];
    const cb = normalized[1];
    const host = (options.host as string | undefined) || 'localhost';
    const addressType = net.isIP(host);
    // Not TCP (a path), a socket on a handle of its own (or already connecting), TLS, a child of a
    // connecting parent, options net rejects (it throws its own error), a user read buffer
    // (onread) or port 0: net decides, exactly as without the layer.
    if (
      options.path != null ||
      this._handle ||
      this instanceof tls.TLSSocket ||
      this._parent?.connecting ||
      netWouldThrow(options, host, addressType !== 0) ||
      Number(options.port) === 0 ||
      hasUserBuffer(options)
    ) {
      return origConnect.call(this, normalized);
    }
    const port = Number(options.port);
    const worker = workerNow();
    if (!worker) return origConnect.call(this, normalized);
    if (addressType) {
      const entry = findEndpoint(worker, host, port);
      if (!entry) {
        track(this, 'not-published');
        return origConnect.call(this, normalized);
      }
      const handle = beginConnect(this, cb, host, port);
      // As net does for an IP: the connection starts on the next tick, if still wanted.
      process.nextTick(() => {
        if (this.connecting && this._handle === handle) internalCutThrough(this, handle, host, port, addressType as 4 | 6, options, entry);
      });
      return this;
    }
    // A name: resolve it as net would (same lookup function, same options, same 'lookup' events)
    // and go cut-through when the address net would try first is published. Otherwise net
    // connects with the answer replayed to it (no second lookup).
    const placeholder = beginConnect(this, cb, host, port);
    this._host = host;
    let family = options.family;
    if (family === 'IPv4') family = 4;
    else if (family === 'IPv6') family = 6;
    const dnsopts: { family: unknown; hints: number; all?: boolean } = { family, hints: (options.hints as number | undefined) || 0 };
    if (family !== 4 && family !== 6 && dnsopts.hints === 0) dnsopts.hints = dns.ADDRCONFIG;
    const lookup = (options.lookup as typeof dns.lookup | undefined) || dns.lookup;
    const autoSelect = typeof options.autoSelectFamily === 'boolean' ? options.autoSelectFamily : net.getDefaultAutoSelectFamily();
    const multi = family !== 4 && family !== 6 && !options.localAddress && autoSelect;
    if (multi) dnsopts.all = true;
    (lookup as (h: string, o: unknown, cb: (...r: unknown[]) => void) => void)(host, dnsopts, (...result: unknown[]) => {
      if (this._handle !== placeholder || !this.connecting) {
        // Destroyed meanwhile: net still reports a single lookup, then stops.
        if (!multi && this._handle !== placeholder) this.emit('lookup', result[0], result[1], result[2], host);
        return;
      }
      const err = result[0];
      let first: { address: string; family: number } | undefined;
      let all: { address: string; family: number }[] = [];
      let count = 1;
      if (!err && multi && Array.isArray(result[1])) {
        all = (result[1] as unknown[]).filter(isLookupAddress);
        const order = attemptOrder(all);
        first = order[0];
        count = order.length;
      } else if (!err && !multi && typeof result[1] === 'string') {
        first = { address: result[1], family: result[2] as number };
        all = [first];
      }
      const entry = first && net.isIP(first.address) && (first.family === 4 || first.family === 6)
        ? findEndpoint(worker, first.address, port)
        : undefined;
      if (!first || !entry) {
        // net connects, and sees exactly the answer this lookup got.
        this._handle = null;
        track(this, 'not-published');
        const replay = (h: string, o: { all?: boolean }, done: (...r: unknown[]) => void): void => {
          if (Boolean(o?.all) === multi) done(...result);
          else (lookup as (h: string, o: unknown, cb: (...r: unknown[]) => void) => void)(h, o, done);
        };
        origConnect.call(this, { ...options, lookup: replay });
        carryRef(placeholder, this);
        return;
      }
      for (const a of all) {
        this.emit('lookup', err, a.address, a.family, host);
        if (!this.connecting || this._handle !== placeholder) return;
      }
      if (count > 1) (this as unknown as { autoSelectFamilyAttemptedAddresses: string[] }).autoSelectFamilyAttemptedAddresses = [];
      this._unrefTimer();
      internalCutThrough(this, placeholder, first.address, port, first.family as 4 | 6, options, entry, count > 1);
    });
    return this;
  };

  /**
   * What net's connect does before it looks anything up, on a SessionHandle instead of a TCP one:
   * the callback, a socket reused after close, the timer, 'opening'. Returns the handle; it has no
   * session and no local address until the connection is made.
   */
  function beginConnect(socket: SocketX, cb: ((...a: unknown[]) => void) | null, host: string, port: number): SessionHandle {
    if (cb) socket.once('connect', cb);
    if (socket.write !== net.Socket.prototype.write) socket.write = net.Socket.prototype.write;
    if (socket.destroyed) {
      socket._peername = null;
      socket._sockname = null;
    }
    const handle = new SessionHandle(undefined, { address: '', family: 'IPv4', port: 0 }, { address: host, family: familyOf(host), port });
    handle.localKnown = false;
    socket._handle = handle;
    // net's initSocketHandle: a socket that was closed is usable again.
    (socket as unknown as { _undestroy(): void })._undestroy();
    socket._sockname = null;
    handle.attachSocket(socket);
    track(socket, 'published');
    socket._unrefTimer();
    socket.connecting = true;
    return handle;
  }

  /**
   * net's internalConnect, for a published endpoint: bind the local address (a real kernel bind,
   * so a port in use fails as it would), then the cut-through connect. If the endpoint is gone by
   * now, or its listener refuses, net connects through the kernel instead, which gives exactly the
   * outcome a kernel connect gives (served by whoever holds the port, or refused).
   */
  function internalCutThrough(
    socket: SocketX,
    handle: SessionHandle,
    address: string,
    port: number,
    addressType: 4 | 6,
    options: Record<string, unknown>,
    entry: EndpointEntry,
    multi = false,
  ): void {
    const worker = workerNow() as VlsWorker;
    const dst = effectiveDestination(address);
    let localAddress = sourceFor(dst);
    let localPort: number;
    let reservation: BoundHandle | undefined;
    const wantAddress = options.localAddress as string | undefined;
    const wantPort = options.localPort as number | undefined;
    if (wantAddress || wantPort) {
      const bindAddress = wantAddress || (addressType === 4 ? '0.0.0.0' : '::');
      const r = createServerHandle(bindAddress, wantPort || 0, addressType);
      let err = typeof r === 'number' ? r : 0;
      const out: { address?: string; port?: number } = {};
      if (typeof r !== 'number') {
        err = r.getsockname(out);
        // net's checkBindError: bound, but not to the port asked for.
        if (!err && wantPort && out.port !== wantPort) err = UV_EADDRINUSE;
        if (err) r.close();
        else reservation = r;
      }
      if (err || !reservation) {
        socket.destroy(errnoException(err || UV_EADDRINUSE, 'bind', bindAddress, wantPort));
        return;
      }
      localPort = out.port as number;
      if (wantAddress && wantAddress !== '0.0.0.0' && wantAddress !== '::') localAddress = wantAddress;
    } else {
      localPort = nextLocalPort();
    }
    let released = false;
    const release = (): void => {
      if (reservation && !released) {
        released = true;
        reservation.close();
      }
    };
    if (reservation) socket.once('close', release);
    Object.assign(handle.local, { address: localAddress, family: familyOf(localAddress), port: localPort });
    Object.assign(handle.remote, { address: dst, family: familyOf(dst), port });
    handle.localKnown = true;
    let attempted = false;
    const viaKernel = (reason: TransportReason): void => {
      release();
      socket._handle = null;
      track(socket, reason);
      // net makes its own attempt: the one reported for the cut-through does not count twice.
      if (attempted) skipNextEmit(socket, 'connectionAttempt');
      origConnect.call(socket, { ...options, host: address });
      carryRef(handle, socket);
    };
    const meta = encodeMeta({ a: localAddress, p: localPort, da: dst, dp: port });
    let session: VlsSession | undefined;
    try {
      session = worker.connect({ address: lookupAddress(dst), port, meta, entry });
    } catch (e) {
      debug('cut-through connect to %s:%d failed: %s', address, port, (e as Error).message);
      worker.registry.recheck(entry);
      if (strict) {
        release();
        socket.destroy(e as Error);
      } else {
        viaKernel('error');
      }
      return;
    }
    if (!session) {
      viaKernel('not-published');
      return;
    }
    const s = session;
    attempted = true;
    if (multi) (socket as unknown as { autoSelectFamilyAttemptedAddresses: string[] }).autoSelectFamilyAttemptedAddresses.push(`${address}:${port}`);
    socket.emit('connectionAttempt', address, port, addressType);
    // The outcome comes to the session's reader, not to listeners: the connected socket's handle
    // takes the reader's place (handle.bind), so nothing of this call's scope (the options, the
    // metadata, the registry entry) stays with the session for the connection's life, and the
    // session needs no listener table.
    const onConnect = (): void => {
      if (socket._handle !== handle || !socket.connecting) {
        // Destroyed (maybe reused) before the connection was made.
        try {
          s.close();
        } catch {
          /* already gone */
        }
        return;
      }
      handle.bind(s);
      socket.connecting = false;
      socket._sockname = null;
      socket._unrefTimer();
      socket.emit('connect');
      socket.emit('ready');
      if (!socket.isPaused()) socket.read(0);
    };
    const onConnectError = (err: NodeJS.ErrnoException): void => {
      if (socket._handle !== handle || !socket.connecting) return;
      debug('cut-through connect to %s:%d refused (%s)', address, port, err.code);
      worker.registry.recheck(entry);
      if (err.code !== 'EACCES' && !strict) {
        viaKernel('error');
        return;
      }
      socket.connecting = false;
      const ex = errnoException(err.errno ?? -111, 'connect', address, port);
      socket.emit('connectionAttemptFailed', address, port, addressType, ex);
      socket.destroy(ex);
    };
    // Readiness that comes before the outcome is held by the worker until after it.
    s.reader = { onReadable: ignoreReadiness, onConnect, onConnectError };
  }

  const uninstallWriter = installSessionWriter(net.Socket.prototype);
  return () => {
    uninstallWriter();
    proto.connect = origConnect;
    proto._destroy = origDestroy;
    net.Server.prototype.listen = origListen;
    net.Server.prototype.close = origClose;
  };
}

