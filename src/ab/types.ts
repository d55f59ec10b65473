/**
 * The public shapes of `vls ab`: what runAb() takes and what it returns (and what `--json` writes).
 * The result is plain JSON data; `schema` names its version and changes when a field changes
 * meaning or disappears (new fields may be added within a version).
 */

/** What the client does on each connection. */
export type AbWorkload = 'echo' | 'http' | 'bulk';

/** Where the server and the client run: both on CPU 0, server on CPU 0 and client on CPU 1, or wherever the kernel likes. */
export type AbPlacement = 'same' | 'split' | 'unpinned';

/** The two sides: A is plain Node over kernel TCP, B is the same pair through the layer. */
export type AbSide = 'A' | 'B';

/** Options of runAb(). Everything but `server`/`port` has a default. */
export interface AbOptions {
  /** echo: ping-pong of `size`-byte messages; http: keep-alive requests; bulk: one-way stream. Default echo. */
  workload?: AbWorkload;
  /**
   * The server to compare, as a command line (split like a shell does, without expansions) or an
   * argv array. Started as given for A, with NODE_OPTIONS=--require=<preload> added for B.
   * Default: the repo's example server for the workload (examples/echo-server.js,
   * examples/http-server.js, examples/sink-server.js).
   */
  server?: string | readonly string[];
  /** The port the server listens on (required with `server`; default: a free one in 20000-29999). */
  port?: number;
  /** The address the client connects to. Default 127.0.0.1. */
  host?: string;
  /** Message bytes: echo (default 64), bulk write size (default 65536), http request body (default 0: GET). */
  size?: number;
  /** Concurrent connections. Default 1. */
  connections?: number;
  /** HTTP request path. Default "/". */
  path?: string;
  /** Measured seconds per side and round (default 2), unless `requests` is given. */
  duration?: number;
  /** Measured operations per side and round instead of a duration. */
  requests?: number;
  /** Unmeasured seconds of load before each measured window (JIT, caches). Default 0.5. */
  warmup?: number;
  /** Rounds; each runs A then B. Default 3. */
  rounds?: number;
  /** Open loop: operations per second over all connections, latency from the intended send time. Default: closed loop. */
  rate?: number;
  /** CPU placement. Default unpinned. */
  placement?: AbPlacement;
  /** Seconds to wait for the server's port to accept connections. Default 10. */
  startTimeout?: number;
  /** Working directory of the server command. Default process.cwd(). */
  cwd?: string;
  /** Environment of both sides (the layer's variables are set on top). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Aborts the run; every child process is stopped and the promise rejects with an AbortError. */
  signal?: AbortSignal;
  /** Called as the run moves on (for progress displays). */
  onProgress?: (event: AbProgress) => void;
}

/** A progress event. */
export interface AbProgress {
  round: number;
  rounds: number;
  side: AbSide;
  phase: 'server' | 'client' | 'warmup' | 'measure' | 'drain' | 'done';
  /** Seconds into the phase (warmup/measure). */
  elapsed?: number;
  /** Planned seconds of the phase (warmup; measure when the window is a duration). */
  total?: number;
  /** Operations completed in the measured window so far. */
  ops?: number;
  /** The finished round of this side (phase 'done'). */
  result?: AbRound;
}

/** The options a run really used (all defaults filled in). */
export interface AbResolvedOptions {
  workload: AbWorkload;
  /** The server argv; for a built-in server, the example's. */
  server: string[];
  /** True when the server is the repo's built-in example. */
  builtin: boolean;
  port: number;
  host: string;
  size: number;
  connections: number;
  path: string;
  /** Measured seconds per round, or null when `requests` is used. */
  duration: number | null;
  requests: number | null;
  warmup: number;
  rounds: number;
  /** Open-loop rate (ops/s over all connections), or null for a closed loop. */
  rate: number | null;
  placement: AbPlacement;
  startTimeout: number;
  cwd: string;
}

/**
 * Latency figures in microseconds, from an HDR histogram recorded in nanoseconds. It holds every
 * operation due in the measured window: those that completed in it, those that completed after it
 * (a stall across the end of the window), and stuck ones with their wait so far; so `count` can
 * exceed `ops` (completions in the window) by the operations in flight when the window ended.
 */
export interface AbLatency {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Which transport the client's connections really used. */
export interface AbTransport {
  /** 'tcp' (every socket on a kernel TCP handle), 'cut-through' (every one on a SessionHandle), or 'mixed'. */
  kind: 'tcp' | 'cut-through' | 'mixed';
  /** Connections per handle class, e.g. { TCP: 4 } or { SessionHandle: 4 }. */
  handles: Record<string, number>;
}

/** CPU time over the measured window. */
export interface AbCpu {
  /** Seconds of CPU (user + system) of the client process. */
  clientSec: number;
  /** Seconds of CPU (user + system) of the server's process tree, from /proc/<pid>/stat. */
  serverSec: number;
  /** Client CPU per operation, µs (per MB for bulk). */
  clientPerOp: number;
  /** Server CPU per operation, µs (per MB for bulk). */
  serverPerOp: number;
}

/** One side of one round. */
export interface AbRound {
  round: number;
  side: AbSide;
  latency: AbLatency;
  /** Operations completed in the window (messages, requests, or bulk writes). */
  ops: number;
  /** Bytes the client sent in the window: messages, whole requests (head and body), or bulk writes. */
  bytes: number;
  /** Length of the measured window, seconds. */
  seconds: number;
  /** ops/s for echo and http, GB/s (1e9 bytes/s) for bulk. */
  throughput: number;
  cpu: AbCpu;
  transport: AbTransport;
  /** B only: whether the server published its endpoint in the namespace before the client started. */
  published?: boolean;
  /** http: responses per status class ('2xx', '4xx', ...). */
  status?: Record<string, number>;
  /** Connections the client had to open again (the server closed them). */
  reconnects: number;
  /**
   * Operations (or bulk connections waiting for 'drain') still outstanding 2 s (or twice the
   * slowest operation of the window) after the window ended: stuck. Each stuck operation is in the
   * histogram with the time it had waited when it was given up (a lower bound).
   */
  unfinished: number;
  /** The round's latency histogram (nanoseconds), HdrHistogram compressed base64 encoding. */
  histogram: string;
}

/** One side over all rounds. */
export interface AbSideResult {
  side: AbSide;
  /** What ran: "plain Node (kernel TCP)" or "through node-vls (--require preload)". */
  label: string;
  rounds: AbRound[];
  /** Figures of the histograms merged over the rounds, throughput and CPU over the summed windows. */
  merged: {
    latency: AbLatency;
    ops: number;
    bytes: number;
    seconds: number;
    throughput: number;
    cpu: AbCpu;
    transport: AbTransport;
    histogram: string;
  };
  /** Latency by percentile of the merged histogram: [percentile (0-100), µs], for plots. */
  curve: [number, number][];
}

/** A B/A ratio: of the merged figures, and the spread of the per-round ratios (null where A is 0). */
export interface AbRatio {
  merged: number | null;
  min: number | null;
  max: number | null;
}

/** Names of the figures that get a B/A ratio. */
export type AbMetric =
  | 'p50'
  | 'p90'
  | 'p99'
  | 'p999'
  | 'max'
  | 'throughput'
  | 'clientCpuPerOp'
  | 'serverCpuPerOp';

/** The result of runAb() and the content of `vls ab --json`. */
export interface AbResult {
  schema: 'node-vls/ab@1';
  startedAt: string;
  finishedAt: string;
  environment: {
    node: string;
    vls: string;
    platform: string;
    arch: string;
    cpus: number;
    cpuModel: string;
    loadavg: number[];
  };
  options: AbResolvedOptions;
  units: {
    latency: 'us';
    throughput: 'msg/s' | 'req/s' | 'GB/s';
    /** What one op is for the per-op CPU figures. */
    cpuPerOp: 'us/msg' | 'us/req' | 'us/MB';
  };
  sides: { A: AbSideResult; B: AbSideResult };
  ratios: Record<AbMetric, AbRatio>;
  /** Things a reader must know, e.g. B connections that fell back to kernel TCP. */
  warnings: string[];
}
