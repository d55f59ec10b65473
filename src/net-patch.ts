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
 *   connect(): resolve the host (lookup option or dns.lookup, as net does) -> published?
 *             cut-through : original connect (with the resolved address, no second lookup)
 */
import * as dc from 'node:diagnostics_channel';
import * as dns from 'node:dns';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { debuglog } from 'node:util';

import { errnoException } from './errors';
import { attachSessionWriter, SessionHandle, type SockAddr } from './session-handle';
import type { VlsListener, VlsSession, VlsWorker } from './worker';

const debug = debuglog('vls');
const serverChannel = dc.channel('net.server.socket');

/** Why a connection took the transport it took (visible in `vls stat`). */
export type TransportReason = 'published' | 'not-published' | 'disabled' | 'error';

const kVls = Symbol('vls.listener');
const listening = new Set<ServerX>();
const kTransport = Symbol('vls.transport');

type ServerX = net.Server & {
  [kVls]?: VlsListener;
  _connections: number;
  allowHalfOpen: boolean;
  pauseOnConnect: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
  highWaterMark?: number;
};

type SocketX = Omit<net.Socket, 'connecting'> & {
  connecting: boolean;
  [kTransport]?: TransportReason;
  _handle: unknown;
  _peername: unknown;
  _sockname: unknown;
  server?: net.Server;
  _server?: net.Server;
};

type NormalizedArgs = [Record<string, unknown>, ((...a: unknown[]) => void) | null] & { [k: symbol]: unknown };

let ephemeral = 32768 + Math.floor(Math.random() * 28000);
function nextLocalPort(): number {
  ephemeral = ephemeral >= 60999 ? 32768 : ephemeral + 1;
  return ephemeral;
}

function familyOf(address: string): 'IPv4' | 'IPv6' {
  return net.isIPv6(address) ? 'IPv6' : 'IPv4';
}

interface ConnMeta {
  a: string; // connector's address
  p: number; // connector's port
  da: string; // destination address as the connector dialled it
  dp: number;
}

/** Every open socket the patch saw (client connects and server connections), for `vls stat`. */
const tracked = new Set<SocketX>();
function track(socket: SocketX): void {
  tracked.add(socket);
  socket.once('close', () => tracked.delete(socket));
}

function describe(s: SocketX): Record<string, unknown> {
  const h = s._handle;
  const row: Record<string, unknown> = {
    transport: h instanceof SessionHandle ? 'cut-through' : 'kernel',
    reason: s[kTransport] ?? 'not-published',
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
    for (const s of tracked) rows.push(describe(s));
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
  const proto = net.Socket.prototype as unknown as { connect: (...args: unknown[]) => net.Socket };
  const origConnect = proto.connect;
  const origListen = net.Server.prototype.listen;
  const origClose = net.Server.prototype.close;
  const normalize = (net as unknown as { _normalizeArgs(a: unknown[]): NormalizedArgs })._normalizeArgs;

  function publish(server: ServerX): void {
    const addr = server.address();
    if (!addr || typeof addr === 'string' || server[kVls]) return;
    // TLS stays on the kernel for now: its native wrap needs a kernel stream handle.
    if (server instanceof tls.Server) return;
    const worker = workerNow();
    if (!worker) return;
    try {
      const l = worker.listen({ address: addr.address, port: addr.port });
      l.unref(); // the kernel listener already holds the loop (and honours server.unref())
      server[kVls] = l;
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
    let meta: ConnMeta;
    try {
      meta = JSON.parse(session.peerMeta?.toString() ?? '') as ConnMeta;
    } catch {
      session.reset();
      return;
    }
    const local: SockAddr = { address: meta.da, family: familyOf(meta.da), port: meta.dp };
    const remote: SockAddr = { address: meta.a, family: familyOf(meta.a), port: meta.p };
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
    attachSessionWriter(socket, handle);
    socket[kTransport] = 'published';
    server._connections++;
    socket.server = server;
    socket._server = server;
    server.emit('connection', socket);
    if (serverChannel.hasSubscribers) serverChannel.publish({ socket });
  }

  net.Server.prototype.listen = function vlsListen(this: ServerX, ...args: unknown[]) {
    const ret = origListen.apply(this, args as Parameters<typeof origListen>);
    // Published before the application's own 'listening' callbacks run, so a connect made in
    // them already finds the endpoint.
    this.prependOnceListener('listening', () => publish(this));
    return ret;
  } as typeof origListen;

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
    const normalized: NormalizedArgs =
      // net marks arrays it normalized with a private symbol; http and net.connect pass those.
      Array.isArray(args[0]) && Object.getOwnPropertySymbols(args[0]).length > 0 ? (args[0] as NormalizedArgs) : normalize(args);
    const [options, cb] = normalized;
    const port = options.port;
    // Not TCP (a path), an invalid port, or a socket on a handle of its own: net decides.
    if (
      options.path != null ||
      (typeof port !== 'number' && typeof port !== 'string') ||
      (this.destroyed && this._handle) ||
      this instanceof tls.TLSSocket
    ) {
      if (this instanceof tls.TLSSocket) this[kTransport] = 'disabled';
      return origConnect.call(this, normalized);
    }
    const p = Number(port);
    if (!Number.isInteger(p) || p <= 0 || p > 65535 || (typeof port === 'string' && port.trim() === '')) {
      return origConnect.call(this, normalized);
    }
    const host = (options.host as string | undefined) ?? 'localhost';
    const passthrough = (reason: TransportReason): net.Socket => {
      this[kTransport] = reason;
      return origConnect.call(this, options);
    };
    if (cb) this.once('connect', cb);
    track(this);
    if (net.isIP(host)) {
      return tryCutThrough(this, host, p, options) ?? passthrough('not-published');
    }
    // A name: resolve it (options.lookup or dns.lookup, every address, as net's family
    // autoselection would try them); the first published address goes cut-through. Otherwise net
    // connects as it always does, with its own lookup and events (one extra lookup: the price of
    // keeping dual-stack names exactly as net handles them).
    this.connecting = true;
    const lookup = (options.lookup as typeof dns.lookup | undefined) ?? dns.lookup;
    const family = options.family === 4 || options.family === 6 ? options.family : 0;
    lookup(host, { family, hints: (options.hints as number | undefined) ?? 0, all: true }, (err, addresses) => {
      if (this.destroyed) return;
      const list = err ? [] : Array.isArray(addresses) ? addresses : [{ address: String(addresses), family: 4 }];
      for (const a of list) {
        if (!workerNow()?.registry.lookup('tcp', a.address, p)) continue;
        this.emit('lookup', null, a.address, a.family, host);
        if (tryCutThrough(this, a.address, p, options)) return;
      }
      this.connecting = false;
      passthrough('not-published');
    });
    return this;
  };

  /** Start a cut-through connection on `socket`; undefined when nobody published the endpoint. */
  function tryCutThrough(socket: SocketX, address: string, port: number, options: Record<string, unknown>): net.Socket | undefined {
    let session: VlsSession | undefined;
    const worker = workerNow();
    if (!worker) {
      socket[kTransport] = 'error';
      return undefined;
    }
    const localPort = typeof options.localPort === 'number' && options.localPort > 0 ? options.localPort : nextLocalPort();
    const localAddress = (options.localAddress as string | undefined) ?? address;
    const meta: ConnMeta = { a: localAddress, p: localPort, da: address, dp: port };
    try {
      session = worker.connect({ address, port, meta: Buffer.from(JSON.stringify(meta)) });
    } catch (e) {
      debug('cut-through connect to %s:%d failed: %s', address, port, (e as Error).message);
      if (strict) {
        process.nextTick(() => socket.destroy(e as Error));
        return socket;
      }
      socket[kTransport] = 'error';
      return undefined;
    }
    if (!session) return undefined;
    socket[kTransport] = 'published';
    const handle = new SessionHandle(
      undefined,
      { address: localAddress, family: familyOf(localAddress), port: localPort },
      { address, family: familyOf(address), port },
    );
    socket.connecting = true;
    socket._handle = handle;
    socket._peername = null;
    socket._sockname = null;
    attachSessionWriter(socket, handle);
    session.once('connect', () => {
      handle.bind(session!);
      if (socket.destroyed) {
        handle.close();
        return;
      }
      socket.connecting = false;
      socket._sockname = null;
      (socket as unknown as { _unrefTimer(): void })._unrefTimer();
      socket.emit('connect');
      socket.emit('ready');
      if (!socket.isPaused()) socket.read(0);
    });
    session.once('error', (err: NodeJS.ErrnoException) => {
      socket.connecting = false;
      socket.destroy(errnoException(err.errno ?? -111, 'connect', address, port));
    });
    return socket;
  }

  return () => {
    proto.connect = origConnect;
    net.Server.prototype.listen = origListen;
    net.Server.prototype.close = origClose;
  };
}

/** The transport a socket took, if the layer saw it. */
export function transportOf(socket: net.Socket): TransportReason | undefined {
  return (socket as SocketX)[kTransport];
}
