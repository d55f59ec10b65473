/**
 * runAb(): the A/B comparison. Per round, side A then side B, each from scratch:
 *
 *   port free? -> start the server (A: as given + VLS_DISABLE=1; B: NODE_OPTIONS=--require=<preload>
 *   in a private namespace) -> port accepts connections -> (B) endpoint published -> start the
 *   client (B: node --require <preload>) -> warmup -> mark start (server CPU snapshot) -> measured
 *   window -> mark end (snapshot) -> result -> client exits -> stop the server's process group
 *
 * A and B alternate so that drift on a noisy machine hits both. The histograms of each side are
 * merged over the rounds; every ratio is B/A, of the merged figures and per round (min-max).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as dns from 'node:dns/promises';
import * as net from 'node:net';

import { loadNative } from '../native';
import { namespaceDir, Registry } from '../namespace';
import { AbError } from './errors';
import { decodeHistogram, encodeHistogram, latencyOf, mergeHistograms, percentileCurve } from './histogram';
import { METRICS, metricOf } from './metrics';
import { BUILTIN_SERVERS, resolveOptions } from './options';
import {
  cpuSecondsBetween,
  placementPrefixes,
  portInUse,
  Proc,
  sleep,
  treeCpuTicks,
  waitForPort,
  within,
} from './proc';
import type { ClientConfig, ClientMessage, ClientResult, ToolMessage } from './protocol';
import type {
  AbCpu,
  AbMetric,
  AbOptions,
  AbProgress,
  AbRatio,
  AbResolvedOptions,
  AbResult,
  AbRound,
  AbSide,
  AbSideResult,
  AbTransport,
} from './types';

const NAMESPACE = 'ab';

/** The package root (where package.json, preload/ and dist/ are), from src/ab or dist/src/ab. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if ((JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name === 'node-vls') return dir;
      } catch {
        /* keep looking */
      }
    }
    dir = path.dirname(dir);
  }
  throw new Error(`node-vls: cannot find the package root above ${__dirname}`);
}

/** NODE_OPTIONS with `--require=<file>` appended (quoted as Node's NODE_OPTIONS parser wants). */
export function withRequire(nodeOptions: string | undefined, file: string): string {
  const q = /[\s"\\]/.test(file) ? `"${file.replace(/(["\\])/g, '\\$1')}"` : file;
  return `${nodeOptions ? `${nodeOptions} ` : ''}--require=${q}`;
}

interface Ctx {
  o: AbResolvedOptions;
  preload: string;
  clientJs: string;
  runtime: string;
  envA: NodeJS.ProcessEnv;
  envB: NodeJS.ProcessEnv;
  clientEnvB: NodeJS.ProcessEnv;
  prefixes: { server: string[]; client: string[] };
  signal: AbortSignal | undefined;
  progress: (e: AbProgress) => void;
  warnings: string[];
}

/** Picks a port in 27000-29999 that nothing holds (for a built-in server). */
async function pickPort(host: string): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = 27000 + Math.floor(Math.random() * 3000);
    if ((await portInUse(host, p)) === undefined) return p;
  }
  throw new AbError('ERR_VLS_AB_PORT_IN_USE', `found no free port in 27000-29999 on ${host}; give one with --port`);
}

/** Runs the comparison. Rejects with an AbError (err.code ERR_VLS_AB_*), an option error, or the signal's reason. */
export async function runAb(options: AbOptions = {}): Promise<AbResult> {
  const o = resolveOptions(options);
  const signal = options.signal;
  signal?.throwIfAborted();
  const startedAt = new Date();
  const root = packageRoot();
  const preload = path.join(root, 'preload', 'index.js');
  const clientJs = path.join(root, 'dist', 'src', 'ab', 'client.js');
  if (!fs.existsSync(clientJs)) {
    throw new AbError('ERR_VLS_AB_CLIENT_FAILED', `${clientJs} is missing: build node-vls first (npm run build)`);
  }
  const baseEnv = options.env ?? process.env;
  const prefixes = placementPrefixes(o.placement, baseEnv);
  if (o.builtin) {
    if (o.port === 0) o.port = await pickPort(o.host);
    o.server = [process.execPath, path.join(root, BUILTIN_SERVERS[o.workload]), String(o.port)];
  }
  const runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'vls-ab-'));
  const envA: NodeJS.ProcessEnv = { ...baseEnv, VLS_DISABLE: '1' };
  const clientEnvB: NodeJS.ProcessEnv = { ...baseEnv, VLS_RUNTIME_DIR: runtime, VLS_NAMESPACE: NAMESPACE };
  delete clientEnvB.VLS_DISABLE;
  const envB: NodeJS.ProcessEnv = { ...clientEnvB, NODE_OPTIONS: withRequire(baseEnv.NODE_OPTIONS, preload) };
  const ctx: Ctx = {
    o,
    preload,
    clientJs,
    runtime,
    envA,
    envB,
    clientEnvB,
    prefixes,
    signal,
    progress: (e) => options.onProgress?.(e),
    warnings: [],
  };
  const rounds: Record<AbSide, AbRound[]> = { A: [], B: [] };
  try {
    for (let r = 1; r <= o.rounds; r++) {
      for (const side of ['A', 'B'] as const) {
        const res = await runSide(ctx, r, side);
        rounds[side].push(res);
        ctx.progress({ round: r, rounds: o.rounds, side, phase: 'done', result: res });
      }
    }
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
  return summarize(ctx, rounds, startedAt);
}

async function runSide(ctx: Ctx, round: number, side: AbSide): Promise<AbRound> {
  const { o, signal } = ctx;
  const progress = (phase: AbProgress['phase'], extra: Partial<AbProgress> = {}): void =>
    ctx.progress({ round, rounds: o.rounds, side, phase, ...extra });
  signal?.throwIfAborted();
  const busy = await portInUse(o.host, o.port);
  if (busy) {
    throw new AbError(
      'ERR_VLS_AB_PORT_IN_USE',
      `port ${o.port} is in use before the server of round ${round} side ${side} starts: ${busy}`,
    );
  }
  progress('server');
  const server = new Proc([...ctx.prefixes.server, ...o.server], { env: side === 'A' ? ctx.envA : ctx.envB, cwd: o.cwd });
  // The client starts meanwhile (Node's startup overlaps the server's) and waits for 'go'.
  const cfg: ClientConfig = {
    workload: o.workload,
    host: o.host,
    port: o.port,
    size: o.size,
    connections: o.connections,
    path: o.path,
    duration: o.duration,
    requests: o.requests,
    warmup: o.warmup,
    rate: o.rate,
  };
  const client = new Proc(
    [...ctx.prefixes.client, process.execPath, ...(side === 'B' ? ['--require', ctx.preload] : []), ctx.clientJs, JSON.stringify(cfg)],
    { env: side === 'A' ? ctx.envA : ctx.clientEnvB, ipc: true },
  );
  try {
    await waitForPort(server, o.host, o.port, o.startTimeout * 1000, signal);
    let published: boolean | undefined;
    if (side === 'B') published = await waitPublished(ctx, server);
    progress('client');
    // (a client that died meanwhile is reported by driveClient; the send error adds nothing)
    if (client.running) client.child.send({ t: 'go' } satisfies ToolMessage, () => undefined);
    const res = await driveClient(ctx, `round ${round} side ${side}`, client, server, (phase, elapsed, ops) => {
      const total = phase === 'warmup' ? o.warmup : o.duration;
      progress(phase, total === null ? { elapsed, ops } : { elapsed, ops, total });
    });
    progress('drain');
    await within(client.exited, 5000);
    return roundOf(ctx, round, side, res, published);
  } finally {
    await client.stop(1000);
    await server.stop();
  }
}

/**
 * B only: waits until the server's endpoint is in the namespace registry, published by a process
 * of the server's tree. The kernel port opens a moment before the layer publishes it, and a client
 * that came in between would take the kernel path. A server that never publishes (not a Node
 * process, or the preload failed) is reported, and the run goes on: the client's transport check
 * shows the fallback.
 */
async function waitPublished(ctx: Ctx, server: Proc): Promise<boolean> {
  const { o } = ctx;
  let address = o.host;
  if (net.isIP(address) === 0) {
    try {
      address = (await dns.lookup(address)).address;
    } catch {
      /* the lookup below then finds nothing */
    }
  }
  let registry: Registry;
  try {
    registry = new Registry(namespaceDir(ctx.runtime, NAMESPACE), loadNative());
  } catch (e) {
    ctx.warnings.push(`B: cannot read the namespace registry (${(e as Error).message}); transport checked by the client only`);
    return false;
  }
  const deadline = Date.now() + Math.min(3000, o.startTimeout * 1000);
  for (;;) {
    const e = registry.lookup('tcp', address, o.port);
    if (e && treeCpuTicks(server.pid).has(e.pid)) return true;
    if (Date.now() >= deadline || !server.running) {
      const w =
        `B: the server did not publish ${o.host}:${o.port} in the layer's namespace ` +
        '(is it a Node process that loads NODE_OPTIONS? did the preload warn?); its connections use the kernel';
      if (!ctx.warnings.includes(w)) ctx.warnings.push(w);
      return false;
    }
    await sleep(20, ctx.signal);
  }
}

interface ClientOutcome extends ClientResult {
  serverSec: number;
}

function driveClient(
  ctx: Ctx,
  where: string,
  client: Proc,
  server: Proc,
  onPhase: (phase: 'warmup' | 'measure', elapsed: number, ops: number) => void,
): Promise<ClientOutcome> {
  const { o, signal } = ctx;
  const limitMs = o.duration !== null ? (o.warmup + o.duration) * 1000 + 30000 : o.warmup * 1000 + 600000;
  return new Promise<ClientOutcome>((resolve, reject) => {
    let before: Map<number, number> | undefined;
    let after: Map<number, number> | undefined;
    let failed: { code: string; message: string } | undefined;
    let settled = false;
    const finish = (err: unknown, value?: ClientOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      client.child.removeListener('message', onMessage);
      if (err) reject(err);
      else resolve(value!);
    };
    const serverDied = (): AbError =>
      new AbError(
        'ERR_VLS_AB_SERVER_DIED',
        `${where}: the server exited while the client was running (${server.describeExit()})`,
        server.output(),
      );
    // The client fails first when the server dies (its connections reset): give the server's exit
    // a moment to arrive, so the report names the cause, not the symptom.
    const judge = (): void => {
      void within(server.exited, 300).then(() => {
        if (!server.running && !server.stopping) return finish(serverDied());
        const what = failed ? `${failed.message} (${failed.code})` : `the client exited without a result (${client.describeExit()})`;
        finish(new AbError('ERR_VLS_AB_CLIENT_FAILED', `${where}: load generator failed: ${what}`, failed ? undefined : client.output()));
      });
    };
    const onMessage = (m: ClientMessage): void => {
      switch (m.t) {
        case 'mark':
          if (m.phase === 'start') {
            before = treeCpuTicks(server.pid);
            onPhase('measure', 0, 0);
          } else after = treeCpuTicks(server.pid);
          break;
        case 'progress':
          onPhase(m.phase, m.elapsed, m.ops);
          break;
        case 'connected':
          onPhase('warmup', 0, 0);
          break;
        case 'result':
          finish(undefined, {
            histogram: m.histogram,
            ops: m.ops,
            bytes: m.bytes,
            seconds: m.seconds,
            cpuUs: m.cpuUs,
            serverSec: before && after ? cpuSecondsBetween(before, after) : 0,
            handles: m.handles,
            status: m.status,
            reconnects: m.reconnects,
            diag: m.diag,
            unfinished: m.unfinished,
          });
          break;
        case 'failed':
          failed = { code: m.code, message: m.message };
          judge();
          break;
      }
    };
    const onAbort = (): void => finish(signal!.reason);
    client.child.on('message', onMessage);
    signal?.addEventListener('abort', onAbort, { once: true });
    void server.exited.then(() => {
      if (!server.stopping) finish(serverDied());
    });
    void client.exited.then(judge);
    const timer = setTimeout(
      () => finish(new AbError('ERR_VLS_AB_TIMEOUT', `${where} did not finish within ${limitMs / 1000} s`, client.output())),
      limitMs,
    );
  });
}

function transportOf(handles: Record<string, number>): AbTransport {
  const names = Object.keys(handles).filter((k) => (handles[k] ?? 0) > 0);
  const kind = names.length === 1 && names[0] === 'TCP' ? 'tcp' : names.length === 1 && names[0] === 'SessionHandle' ? 'cut-through' : 'mixed';
  return { kind, handles: { ...handles } };
}

function cpuOf(o: AbResolvedOptions, clientSec: number, serverSec: number, ops: number, bytes: number): AbCpu {
  // per message/request in µs; for bulk per MB (1e6 bytes) in µs
  const units = o.workload === 'bulk' ? bytes / 1e6 : ops;
  return {
    clientSec,
    serverSec,
    clientPerOp: units > 0 ? (clientSec * 1e6) / units : 0,
    serverPerOp: units > 0 ? (serverSec * 1e6) / units : 0,
  };
}

function throughputOf(o: AbResolvedOptions, ops: number, bytes: number, seconds: number): number {
  if (seconds <= 0) return 0;
  return o.workload === 'bulk' ? bytes / seconds / 1e9 : ops / seconds;
}

function roundOf(ctx: Ctx, round: number, side: AbSide, r: ClientOutcome, published: boolean | undefined): AbRound {
  const { o } = ctx;
  const transport = transportOf(r.handles);
  const total = Object.values(r.handles).reduce((a, b) => a + b, 0);
  if (side === 'A' && transport.kind !== 'tcp') {
    ctx.warnings.push(`A round ${round}: expected kernel TCP, the client's sockets were ${JSON.stringify(r.handles)}`);
  }
  if (side === 'B' && transport.kind !== 'cut-through') {
    ctx.warnings.push(
      `B round ${round}: ${total - (r.handles.SessionHandle ?? 0)} of ${total} connections fell back to the kernel ` +
        `(${JSON.stringify(r.handles)}); B is not measuring the layer`,
    );
  }
  const bad = Object.entries(r.status).filter(([k]) => k !== '2xx');
  if (bad.length > 0) ctx.warnings.push(`${side} round ${round}: non-2xx responses ${JSON.stringify(Object.fromEntries(bad))}`);
  if (r.reconnects > 0) {
    ctx.warnings.push(`${side} round ${round}: the server closed connections after responses; ${r.reconnects} reconnects were measured too`);
  }
  if (r.ops === 0 || r.unfinished > 0 || r.diag.length > 0) {
    const what =
      r.ops === 0 ? 'no operation completed in the measured window' : r.unfinished > 0 ? `${r.unfinished} operation(s) stuck` : 'connections stuck at the end';
    ctx.warnings.push(`${side} round ${round}: ${what} (${r.diag.join('; ')})`);
  }
  const h = decodeHistogram(r.histogram);
  const out: AbRound = {
    round,
    side,
    latency: latencyOf(h),
    ops: r.ops,
    bytes: r.bytes,
    seconds: r.seconds,
    throughput: throughputOf(o, r.ops, r.bytes, r.seconds),
    cpu: cpuOf(o, r.cpuUs / 1e6, r.serverSec, r.ops, r.bytes),
    transport,
    reconnects: r.reconnects,
    unfinished: r.unfinished,
    histogram: r.histogram,
  };
  if (published !== undefined) out.published = published;
  if (o.workload === 'http') out.status = r.status;
  return out;
}

function sideOf(ctx: Ctx, side: AbSide, rounds: AbRound[]): AbSideResult {
  const { o } = ctx;
  const h = mergeHistograms(rounds.map((r) => r.histogram));
  const ops = rounds.reduce((a, r) => a + r.ops, 0);
  const bytes = rounds.reduce((a, r) => a + r.bytes, 0);
  const seconds = rounds.reduce((a, r) => a + r.seconds, 0);
  const handles: Record<string, number> = {};
  for (const r of rounds) for (const [k, v] of Object.entries(r.transport.handles)) handles[k] = (handles[k] ?? 0) + v;
  return {
    side,
    label: side === 'A' ? 'plain Node (kernel TCP)' : 'through node-vls (--require preload)',
    rounds,
    merged: {
      latency: latencyOf(h),
      ops,
      bytes,
      seconds,
      throughput: throughputOf(o, ops, bytes, seconds),
      cpu: cpuOf(
        o,
        rounds.reduce((a, r) => a + r.cpu.clientSec, 0),
        rounds.reduce((a, r) => a + r.cpu.serverSec, 0),
        ops,
        bytes,
      ),
      transport: transportOf(handles),
      histogram: encodeHistogram(h),
    },
    curve: percentileCurve(h),
  };
}

/** b / a, or null when a is 0 (no ratio). */
function ratio(b: number, a: number): number | null {
  return a > 0 && Number.isFinite(b) ? b / a : null;
}

function summarize(ctx: Ctx, rounds: Record<AbSide, AbRound[]>, startedAt: Date): AbResult {
  const { o } = ctx;
  const A = sideOf(ctx, 'A', rounds.A);
  const B = sideOf(ctx, 'B', rounds.B);
  const ratios = {} as Record<AbMetric, AbRatio>;
  for (const m of METRICS) {
    const per = rounds.A.map((a, i) => ratio(metricOf(rounds.B[i]!, m), metricOf(a, m))).filter((v): v is number => v !== null);
    ratios[m] = {
      merged: ratio(metricOf(B.merged, m), metricOf(A.merged, m)),
      min: per.length > 0 ? Math.min(...per) : null,
      max: per.length > 0 ? Math.max(...per) : null,
    };
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  return {
    schema: 'node-vls/ab@1',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    environment: {
      node: process.version,
      vls: pkg.version,
      platform: process.platform,
      arch: process.arch,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      loadavg: os.loadavg(),
    },
    options: o,
    units: {
      latency: 'us',
      throughput: o.workload === 'bulk' ? 'GB/s' : o.workload === 'http' ? 'req/s' : 'msg/s',
      cpuPerOp: o.workload === 'bulk' ? 'us/MB' : o.workload === 'http' ? 'us/req' : 'us/msg',
    },
    sides: { A, B },
    ratios,
    warnings: ctx.warnings,
  };
}
