/**
 * The `vls` command.
 *   vls stat [--json]    workers attached to the namespace and the endpoints they publish
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
    workers.push({ index: Number(m[1]), sock, alive: native.probe(sock) === 0 });
  }
  workers.sort((a, b) => a.index - b.index);
  const endpoints = new Registry(dir, native)
    .list()
    .map((e) => ({ proto: e.proto, address: e.address, port: e.port, worker: e.worker, pid: e.pid }));
  return { namespace: cfg.namespace, dir, workers, endpoints };
}

function usage(): string {
  return 'usage: vls stat [--json]\n';
}

/** Entry point of bin/vls.js. Returns the exit code. */
export function main(argv: string[], out: NodeJS.WritableStream = process.stdout): number {
  const [cmd, ...rest] = argv;
  if (cmd === 'stat') {
    const r = stat();
    if (rest.includes('--json')) {
      out.write(JSON.stringify(r, null, 2) + '\n');
      return 0;
    }
    out.write(`namespace ${r.namespace} (${r.dir})\n`);
    out.write(`workers: ${r.workers.length}\n`);
    for (const w of r.workers) out.write(`  w${w.index}  ${w.alive ? 'attached' : 'stale'}  ${w.sock}\n`);
    out.write(`endpoints: ${r.endpoints.length}\n`);
    for (const e of r.endpoints) out.write(`  ${e.proto} ${e.address}:${e.port}  worker ${e.worker}  pid ${e.pid}\n`);
    return 0;
  }
  process.stderr.write(usage());
  return cmd === undefined || cmd === '--help' || cmd === '-h' ? 0 : 2;
}
