/**
 * The `vls` command.
 *   vls stat [--json]    workers attached to the namespace, their sessions (transport, why, state,
 *                        addresses, bytes, fifo fill) and the endpoints they publish
 *   vls ab [options]     A/B latency comparison, plain Node vs through the layer (src/ab/)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { readConfig } from './config';
import { namespaceDir, namespaceRoot, Registry } from './namespace';
import { loadNative } from './native';

interface WorkerRow {
  index: number;
  sock: string;
  alive: boolean;
  pid?: number;
  sessions?: Record<string, unknown>[];
  stats?: Record<string, unknown>;
}

/** What `vls stat` reports. */
export interface StatReport {
  namespace: string;
  dir: string;
  workers: WorkerRow[];
  endpoints: { proto: string; address: string; port: number; worker: number; pid: number }[];
}

/** Gathers the namespace's workers (live or stale sockets) and published endpoints. */
export function stat(env: NodeJS.ProcessEnv = process.env): StatReport {
  const cfg = readConfig(env);
  const native = loadNative();
  const dir = namespaceDir(namespaceRoot(cfg.runtimeDir, env), cfg.namespace);
  const workers: WorkerRow[] = [];
  for (const n of fs.readdirSync(dir)) {
    const m = /^w(\d+)\.sock$/.exec(n);
    if (!m) continue;
    const sock = path.join(dir, n);
    const row: WorkerRow = { index: Number(m[1]), sock, alive: native.probe(sock) === 0 };
    if (row.alive) {
      const r = native.statQuery(sock, 2000);
      if (typeof r === 'string') {
        const snap = JSON.parse(r) as { pid: number; sessions: Record<string, unknown>[]; stats: Record<string, unknown> };
        row.pid = snap.pid;
        row.sessions = snap.sessions;
        row.stats = snap.stats;
      }
    }
    workers.push(row);
  }
  workers.sort((a, b) => a.index - b.index);
  const endpoints = new Registry(dir, native)
    .list()
    .map((e) => ({ proto: e.proto, address: e.address, port: e.port, worker: e.worker, pid: e.pid }));
  return { namespace: cfg.namespace, dir, workers, endpoints };
}

function usage(): string {
  return 'usage: vls stat [--json]\n       vls ab [options]   (vls ab --help)\n';
}

/** Entry point of bin/vls.js. Returns the exit code (a promise of it for the async commands). */
export function main(argv: string[], out: NodeJS.WritableStream = process.stdout): number | Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === 'ab') {
    // loaded on demand: `vls stat` does not pay for the histogram library
    const { abMain } = require('./ab/cli') as typeof import('./ab/cli');
    return abMain(rest, { stdout: out, stderr: process.stderr });
  }
  if (cmd === 'stat') {
    const r = stat();
    if (rest.includes('--json')) {
      out.write(JSON.stringify(r, null, 2) + '\n');
      return 0;
    }
    out.write(`namespace ${r.namespace} (${r.dir})\n`);
    out.write(`workers: ${r.workers.length}\n`);
    for (const w of r.workers) {
      out.write(`  w${w.index}  ${w.alive ? `attached  pid ${w.pid ?? '?'}` : 'stale'}  ${w.sock}\n`);
      for (const s of w.sessions ?? []) {
        const fifo = s.session as { state: string; rxUsed: number; txUsed: number; fifoSize: number } | undefined;
        out.write(
          `    ${String(s.side).padEnd(8)} ${String(s.transport).padEnd(11)} ${String(s.reason ?? '').padEnd(13)} ` +
            `${String(s.state ?? '').padEnd(8)} ${String(s.local).padEnd(21)} -> ${String(s.remote ?? '').padEnd(21)}` +
            (s.bytesRead !== undefined ? ` in ${String(s.bytesRead)} out ${String(s.bytesWritten)}` : '') +
            (s.connections !== undefined ? ` connections ${String(s.connections)}` : '') +
            (fifo ? ` [${fifo.state} rx ${fifo.rxUsed}/${fifo.fifoSize} tx ${fifo.txUsed}/${fifo.fifoSize}]` : '') +
            '\n',
        );
      }
    }
    out.write(`endpoints: ${r.endpoints.length}\n`);
    for (const e of r.endpoints) out.write(`  ${e.proto} ${e.address}:${e.port}  worker ${e.worker}  pid ${e.pid}\n`);
    return 0;
  }
  process.stderr.write(usage());
  return cmd === undefined || cmd === '--help' || cmd === '-h' ? 0 : 2;
}
