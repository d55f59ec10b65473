/**
 * Namespaces: where the workers of one namespace find each other.
 *
 *   <root>/<namespace>/            mode 0700, owned by this user (checked, never trusted)
 *     .lock                        flock: index allocation and registry updates
 *     w<index>.sock                each worker's control socket (SOCK_SEQPACKET)
 *     ep/<proto>_<address>_<port>  a published endpoint: JSON { worker, pid, sock, lh, ... }
 *     ep.gen                       the registry's generation counter (mapped shared; bumped
 *                                  after every change to ep/)
 *
 * <root> is $VLS_RUNTIME_DIR, else $XDG_RUNTIME_DIR/node-vls, else <tmpdir>/node-vls-<uid>.
 * An entry whose worker no longer answers on its control socket is stale: lookups remove it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { VlsError } from './errors';
import type { NativeBinding } from './native';

/** The root directory for namespaces, per the rules above. */
export function namespaceRoot(runtimeDir: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (runtimeDir) return runtimeDir;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'node-vls');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return path.join(os.tmpdir(), `node-vls-${uid}`);
}

/** Create (0700) or check a directory that must be private to this user. */
function privateDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new VlsError('ERR_VLS_NAMESPACE_UNUSABLE', `node-vls: cannot create ${dir}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }
  const st = fs.lstatSync(dir);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (!st.isDirectory()) {
    throw new VlsError('ERR_VLS_NAMESPACE_UNSAFE', `node-vls: ${dir} is not a directory (or is a symlink); refusing to use it`);
  }
  if (st.uid !== uid) {
    throw new VlsError(
      'ERR_VLS_NAMESPACE_UNSAFE',
      `node-vls: ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid}); refusing to use it`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new VlsError(
      'ERR_VLS_NAMESPACE_UNSAFE',
      `node-vls: ${dir} has mode ${(st.mode & 0o777).toString(8)}; it must be private to its owner (0700)`,
    );
  }
}

/** Ensures the namespace directory exists and is safe; returns its path. */
export function namespaceDir(root: string, namespace: string): string {
  fs.mkdirSync(path.dirname(root), { recursive: true });
  privateDir(root);
  const dir = path.join(root, namespace);
  privateDir(dir);
  privateDir(path.join(dir, 'ep'));
  return dir;
}

/** A transport protocol of an endpoint. */
export type Proto = 'tcp' | 'udp';

/** What a published endpoint file holds. */
export interface EndpointEntry {
  proto: Proto;
  address: string;
  port: number;
  worker: number;
  pid: number;
  sock: string;
  lh: number;
  /** Set for an IPv6 wildcard listener that takes no IPv4 connections. */
  v6only?: boolean;
}

/** The tag a listener is published under: a connect must present the same one. */
export function endpointTag(proto: Proto, port: number): number {
  return (proto === 'udp' ? 0x20000 : 0x10000) + port;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function entryName(proto: Proto, address: string, port: number): string {
  return `${proto}_${address.replace(/[^A-Za-z0-9.]/g, (c) => (c === ':' ? '-' : '_'))}_${port}`;
}

/** A read of the registry directory and what is derived from it (see Registry.listing). */
interface Listing {
  /** The registry's generation counter when the names were read. */
  gen: number;
  names: Set<string>;
  /** Ports that appear in the names (entry names end in _<port>). */
  ports: Set<number>;
  /** Entries found live since the names were read. */
  checked: Map<string, EndpointEntry>;
  /** What lookup() answered for a proto, address and port since the names were read (the same
   * answer while the registry is unchanged and the entry's process lives). */
  answers: Map<string, EndpointEntry>;
}

/** The endpoint registry of one namespace. */
export class Registry {
  readonly dir: string;
  private readonly native: NativeBinding;

  /** Where the entries are: one file per endpoint. */
  private readonly epDir: string;

  constructor(dir: string, native: NativeBinding) {
    this.dir = dir;
    this.native = native;
    this.epDir = path.join(dir, 'ep');
  }

  /** Every change to ep/ (under the lock) ends with a bump of the shared generation counter. */
  private withLock<T>(fn: () => T): T {
    const fd = this.native.nsLock(this.dir);
    if (fd < 0) throw new VlsError('ERR_VLS_NAMESPACE_UNUSABLE', `node-vls: cannot lock ${this.dir} (errno ${fd})`);
    try {
      return fn();
    } finally {
      this.bump();
      this.native.nsUnlock(fd);
    }
  }

  private bump(): void {
    const g = this.generation();
    if (g) Atomics.add(g, 0, 1);
  }

  /**
   * The namespace's registry generation (ep.gen, mapped shared by every process in it): bumped
   * after every change to ep/, so a cached listing is current while the counter is unchanged -
   * checked with a load from memory on every connect. Null where the file cannot be mapped.
   */
  private gen: Int32Array | null | undefined;
  private generation(): Int32Array | null {
    if (this.gen === undefined) {
      const ab = this.native.mapCounter(path.join(this.dir, 'ep.gen'));
      this.gen = typeof ab === 'number' ? null : new Int32Array(ab);
    }
    return this.gen;
  }

  private file(proto: Proto, address: string, port: number): string {
    return path.join(this.epDir, entryName(proto, address, port));
  }

  /** Publish an endpoint (replacing a stale one; the caller owns the kernel port already). */
  publish(e: EndpointEntry): void {
    const f = this.file(e.proto, e.address, e.port);
    const tmp = `${f}.${process.pid}.${e.worker}.tmp`;
    this.withLock(() => {
      fs.writeFileSync(tmp, JSON.stringify(e), { mode: 0o600 });
      fs.renameSync(tmp, f);
    });
  }

  /** Remove an endpoint if it is still the one we published. */
  unpublish(e: EndpointEntry): void {
    const f = this.file(e.proto, e.address, e.port);
    this.withLock(() => {
      const cur = this.read(f);
      if (cur && cur.pid === e.pid && cur.worker === e.worker && cur.lh === e.lh) fs.rmSync(f, { force: true });
    });
  }

  private read(f: string): EndpointEntry | undefined {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const v = JSON.parse(text) as Partial<EndpointEntry>;
      if (
        typeof v.worker === 'number' &&
        typeof v.pid === 'number' &&
        typeof v.sock === 'string' &&
        typeof v.lh === 'number' &&
        typeof v.port === 'number' &&
        typeof v.address === 'string' &&
        (v.proto === 'tcp' || v.proto === 'udp')
      ) {
        return v as EndpointEntry;
      }
    } catch {
      /* a torn or foreign file: treated as absent, and removed below */
    }
    fs.rmSync(f, { force: true });
    this.bump();
    return undefined;
  }

  /** Whether anything is published on this port (any address, any protocol): a memory load and a
   * set lookup while the registry is unchanged. */
  hasPort(port: number): boolean {
    return this.listing().ports.has(port);
  }

  /**
   * Finds the endpoint a connection to address:port would reach, as the kernel would: an exact
   * match first, then a wildcard listener (0.0.0.0 for IPv4 destinations, :: for both).
   * A stale entry (its worker does not answer) is removed and skipped.
   */
  lookup(proto: Proto, address: string, port: number): EndpointEntry | undefined {
    const { names, ports, checked, answers } = this.listing();
    // The common miss (a port nobody published: the kernel path) ends here, with one stat.
    if (!ports.has(port)) return undefined;
    // A repeated connect to the same endpoint: the answer found last time, if its process lives.
    const key = `${proto} ${address} ${port}`;
    const again = answers.get(key);
    if (again && pidAlive(again.pid)) return again;
    const e = this.find(proto, address, port, names, checked);
    if (e) answers.set(key, e);
    return e;
  }

  private find(proto: Proto, address: string, port: number, names: Set<string>, checked: Map<string, EndpointEntry>): EndpointEntry | undefined {
    const candidates = [address];
    const v4 = !address.includes(':');
    if (v4) candidates.push('0.0.0.0', '::');
    else candidates.push('::');
    for (const a of candidates) {
      const name = entryName(proto, a, port);
      if (!names.has(name)) continue;
      // An entry checked once stays valid while the registry is unchanged (publish and unpublish
      // bump its generation) and its process lives; a worker that died since is refused by the
      // connect itself (its control socket does not answer).
      const known = checked.get(name);
      if (known && pidAlive(known.pid)) {
        // An ipv6Only wildcard listener is not reached from IPv4, as in the kernel.
        if (v4 && known.v6only) continue;
        return known;
      }
      const e = this.live(path.join(this.epDir, name));
      if (e) {
        checked.set(name, e);
        if (!(v4 && e.v6only)) return e;
      }
    }
    return undefined;
  }

  /**
   * A connect to this entry failed: it is no longer taken as live, and it is removed if it is
   * stale (a worker of a live process can be gone: a worker_threads thread that was terminated).
   */
  recheck(e: EndpointEntry): void {
    this.cache?.checked.delete(entryName(e.proto, e.address, e.port));
    this.cache?.answers.clear();
    this.live(this.file(e.proto, e.address, e.port));
  }

  /**
   * The names in ep/, cached while the registry is unchanged, so that a connect to an endpoint
   * nobody published (the kernel path) costs a load of the generation counter, not a failed open
   * per candidate. The counter is read before the directory and bumped after each change to it,
   * so a listing is never taken as newer than it is. Where the counter cannot be mapped (a
   * namespace directory we cannot write, where publishing fails as well) nothing is cached. With
   * the names go what is derived from them: the ports they publish, and the entries found live
   * since (an entry stays valid while the registry is unchanged and its process lives).
   */
  private cache: Listing | undefined;
  private listing(): Listing {
    const g = this.generation();
    const gen = g ? Atomics.load(g, 0) : -1;
    const c = this.cache;
    if (g && c && c.gen === gen) return c;
    let names: Set<string>;
    try {
      names = new Set(fs.readdirSync(this.epDir));
    } catch {
      names = new Set();
    }
    const ports = new Set<number>();
    for (const n of names) {
      const m = /_(\d+)$/.exec(n);
      if (m) ports.add(Number(m[1]));
    }
    this.cache = { gen, names, ports, checked: new Map(), answers: new Map() };
    return this.cache;
  }

  /** The entry in file f if its worker answers; a stale one is removed (under the lock, and only
   * if it is still the same stale entry). */
  private live(f: string): EndpointEntry | undefined {
    const e = this.read(f);
    if (!e) return undefined;
    // Its process must be alive (a worker index, and so a socket path, is reused after a death)
    // and its worker must answer.
    if (pidAlive(e.pid) && this.native.probe(e.sock) === 0) return e;
    this.withLock(() => {
      const again = this.read(f);
      // A dead pid is stale even if its socket path answers: a new worker took over its index.
      const same = again && again.pid === e.pid && again.sock === e.sock && again.lh === e.lh;
      if (same && (!pidAlive(e.pid) || this.native.probe(e.sock) !== 0)) {
        fs.rmSync(f, { force: true });
      }
    });
    return undefined;
  }

  /** Every live endpoint (for `vls stat`); stale ones are removed on the way. */
  list(): EndpointEntry[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.epDir);
    } catch {
      return [];
    }
    const out: EndpointEntry[] = [];
    for (const n of names) {
      if (n.endsWith('.tmp')) continue;
      const e = this.live(path.join(this.epDir, n));
      if (e) out.push(e);
    }
    return out;
  }
}
