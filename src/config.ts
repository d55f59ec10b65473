/**
 * Configuration from the environment, checked once. Every knob has a default; a bad value throws a
 * RangeError/TypeError that names the variable (like better-sqlite3's option checks).
 */

/** The layer's settings. */
export interface VlsConfig {
  /** VLS_NAMESPACE: processes in the same namespace reach each other through shared memory. */
  namespace: string;
  /** VLS_SECRET: when set, both ends must have the same one to connect. */
  secret: string | undefined;
  /** VLS_FIFO_SIZE: bytes per fifo (one per direction per session), a power of two. */
  fifoSize: number;
  /** VLS_SEGMENT_SIZE: virtual bytes of each per-peer fifo segment (pages are used on demand). */
  segmentSize: number;
  /** VLS_MQ_SIZE: events in each worker's message queue, a power of two. */
  mqSize: number;
  /** VLS_RUNTIME_DIR: overrides where namespaces live (default below). */
  runtimeDir: string | undefined;
  /** VLS_DISABLE=1: the layer leaves Node untouched. */
  disabled: boolean;
  /** VLS_STRICT=1: failures to start or to go cut-through are errors instead of warnings. */
  strict: boolean;
  /**
   * VLS_POLL_USEC: after activity, keep the event loop from sleeping for a while and poll the
   * worker's queue instead (no wake-up needed for the next message: lower latency where wake-ups
   * are dear, at the price of CPU). `auto` (the default): a window that adapts to the traffic, up
   * to {@link AUTO_POLL_CAP_USEC} µs (none for sparse traffic); a number: that many µs after every
   * batch of events; 0: never poll.
   */
  pollUsec: number;
  /** Whether the window adapts (VLS_POLL_USEC=auto); pollUsec is then its upper bound. */
  pollAuto: boolean;
}

/** The upper bound of the adaptive polling window (VLS_POLL_USEC=auto), in µs. */
export const AUTO_POLL_CAP_USEC = 50;

/** VLS_FIFO_SIZE's default: bytes per fifo, one per direction per session. */
export const DEFAULT_FIFO_SIZE = 256 * 1024;

/**
 * VLS_SEGMENT_SIZE's default: 16 GiB of address space per peer, which holds about 32,000 sessions
 * of 256 KiB fifos (each fifo takes its size plus a 64-byte header); memory is used only as pages
 * are touched (a memfd made with no reservation). A connect that finds its peer's segment full
 * goes to the kernel (ENOMEM with VLS_STRICT=1). At 1 GiB the limit was about 2,000 sessions, so
 * a load generator's 10,000 connections to one server went mostly over the kernel. Under an
 * address-space limit (ulimit -v) that cannot take the size, the core halves it until it fits.
 */
export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024 * 1024;

const NS_RE = /^[A-Za-z0-9._-]{1,64}$/;

function intFromEnv(env: NodeJS.ProcessEnv, name: string, dflt: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return v;
}

function pow2FromEnv(env: NodeJS.ProcessEnv, name: string, dflt: number, min: number, max: number): number {
  const v = intFromEnv(env, name, dflt, min, max);
  if ((v & (v - 1)) !== 0) throw new RangeError(`${name} must be a power of two, got ${v}`);
  return v;
}

function flag(env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = env[name];
  return raw !== undefined && raw !== '' && raw !== '0' && raw.toLowerCase() !== 'false';
}

function pollFromEnv(env: NodeJS.ProcessEnv): { pollUsec: number; pollAuto: boolean } {
  const raw = env.VLS_POLL_USEC;
  if (raw === undefined || raw === '' || raw === 'auto') return { pollUsec: AUTO_POLL_CAP_USEC, pollAuto: true };
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || v > 1_000_000) {
    throw new RangeError(`VLS_POLL_USEC must be auto or an integer from 0 to 1000000, got ${JSON.stringify(raw)}`);
  }
  return { pollUsec: v, pollAuto: false };
}

/** VLS_STRICT alone, readable even when another variable is bad (so that a bad one is an error). */
export function strictFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return flag(env, 'VLS_STRICT');
}

/** Reads and checks the configuration. */
export function readConfig(env: NodeJS.ProcessEnv = process.env): VlsConfig {
  const namespace = env.VLS_NAMESPACE === undefined || env.VLS_NAMESPACE === '' ? 'default' : env.VLS_NAMESPACE;
  if (!NS_RE.test(namespace) || namespace === '.' || namespace === '..') {
    throw new RangeError(
      `VLS_NAMESPACE must be 1-64 characters of A-Z a-z 0-9 . _ - (not . or ..), got ${JSON.stringify(namespace)}`,
    );
  }
  return {
    namespace,
    secret: env.VLS_SECRET === undefined || env.VLS_SECRET === '' ? undefined : env.VLS_SECRET,
    fifoSize: pow2FromEnv(env, 'VLS_FIFO_SIZE', DEFAULT_FIFO_SIZE, 4096, 64 * 1024 * 1024),
    segmentSize: intFromEnv(env, 'VLS_SEGMENT_SIZE', DEFAULT_SEGMENT_SIZE, 1024 * 1024, 2 ** 40),
    mqSize: pow2FromEnv(env, 'VLS_MQ_SIZE', 65536, 64, 1 << 20),
    runtimeDir: env.VLS_RUNTIME_DIR === undefined || env.VLS_RUNTIME_DIR === '' ? undefined : env.VLS_RUNTIME_DIR,
    disabled: flag(env, 'VLS_DISABLE'),
    strict: flag(env, 'VLS_STRICT'),
    ...pollFromEnv(env),
  };
}
