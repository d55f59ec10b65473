/**
 * Loads the native addon. Like @parcel/watcher's loader, it fails with a message that says what to
 * do rather than a bare MODULE_NOT_FOUND.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Session info as the addon reports it. */
export interface NativeSessionInfo {
  state: string;
  flags: number;
  err: number;
  side: number;
  rxUsed: number;
  txUsed: number;
  fifoSize: number;
  bytesIn: number;
  bytesOut: number;
  acceptQueued: number;
}

/** Worker counters as the addon reports them. */
export interface NativeWorkerStats {
  index: number;
  sessions: number;
  peers: number;
  eventsIn: number;
  eventsOut: number;
  eventsStale: number;
  eventsDeferred: number;
  mqFull: number;
  /** Eventfd writes to peers that had announced sleep (each is a wake-up). */
  wakeups: number;
  segmentBytes: number;
  segmentUsed: number;
  controlConnections: number;
  controlBad: number;
  controlRefused: number;
  sockPath: string;
  /** The busy-poll window in force (µs; 0: the loop sleeps right after each batch). */
  pollWindowUsec: number;
  /** Batches of events found by polling (no wake-up was needed). */
  pollHits: number;
  /** Polling windows that ran out before an event came. */
  pollMisses: number;
  /** Bulk reads (readChunk) made in this process, every thread: blocks taken from the receive pool. */
  recvPoolTakes: number;
  /** 64 KiB blocks the receive pool holds for reuse (all go back to malloc a second after reads stop). */
  recvPoolFree: number;
}

/** The addon's worker: every method returns >= 0 or a negative errno (never throws). */
export interface NativeWorker {
  attach(
    dir: string,
    fifoSize: number,
    segmentSize: number,
    mqSize: number,
    secret: Buffer,
    onEvents: (n: number, metas: Buffer[] | undefined, records: Float64Array) => void,
    pollUsec: number,
    pollAuto: boolean,
  ): number;
  detach(): void;
  listen(backlog: number, tag: number): number;
  /** Handle or -errno; out[0] becomes 1 when the session is connected now, 0 when a CONNECTED
   * (or CONNECT_FAILED) event will tell. */
  connect(peerSock: string, listenerHandle: number, tag: number, meta: Buffer, out: Float64Array): number;
  write(h: number, buf: Uint8Array, offset: number, length: number): number;
  writev(h: number, bufs: Uint8Array[], allOrNothing: boolean): number;
  read(h: number, buf: Uint8Array, offset: number, length: number): number;
  /** Up to 64 KiB as a Buffer over a block of the receive pool, 0 at end of stream, or -errno. */
  readChunk(h: number): Buffer | number;
  shutdown(h: number, how: number): number;
  close(h: number): number;
  reset(h: number): number;
  info(h: number): NativeSessionInfo | number;
  stats(): NativeWorkerStats | number;
  sessions(): number[];
  setRef(on: boolean): void;
  pump(): void;
  statReply(conn: number, serial: number, json: string): number;
}

/** The native addon's surface, as the binding exports it. */
export interface NativeBinding {
  Worker: new () => NativeWorker;
  version(): { major: number; minor: number };
  errName(negErrno: number): string;
  probe(sockPath: string): number;
  nsLock(dir: string): number;
  nsUnlock(fd: number): void;
  /** An 8-byte ArrayBuffer over the start of a file, shared by every process that maps it; or
   * -errno. */
  mapCounter(path: string): ArrayBuffer | number;
  statQuery(sockPath: string, timeoutMs: number): string | number;
}

let cached: NativeBinding | undefined;
let loadError: Error | undefined;

/** The package root: the nearest folder above this file that holds binding.gyp (this file runs
 * from src/ under the test runner and from dist/src/ once compiled). */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.join(__dirname, '..', '..');
    dir = up;
  }
}

/** Path of the built addon (build/Release/vls.node at the package root). */
export const addonPath = path.join(packageRoot(), 'build', 'Release', 'vls.node');

/** Returns the addon, or throws an Error with code ERR_VLS_ADDON_NOT_BUILT. */
export function loadNative(): NativeBinding {
  if (cached) return cached;
  if (loadError) throw loadError;
  try {
    cached = require(addonPath) as NativeBinding;
    return cached;
  } catch (cause) {
    const err = new Error(
      `node-vls: the native addon could not be loaded from ${addonPath} ` +
        `(${(cause as Error).message}). Run \`npm install\` (or \`npx node-gyp rebuild\`) in the ` +
        `node-vls package to build it.`,
      { cause },
    ) as Error & { code: string };
    err.code = 'ERR_VLS_ADDON_NOT_BUILT';
    loadError = err;
    throw err;
  }
}
