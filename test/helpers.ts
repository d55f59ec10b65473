/* Shared helpers for the tap tests: real child processes, isolated namespaces, counting. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A fresh private runtime dir for one test (VLS_RUNTIME_DIR), removed by the caller. */
export function tmpRuntime(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vls-t-'));
}

/** Start a fixture with node; resolves when it prints a line starting with `ready`. */
export function startFixture(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', name), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${name} did not start`)), 20000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('ready'));
      if (line) {
        clearTimeout(t);
        resolve({ child, line });
      }
    });
    child.on('exit', (code, sig) => {
      clearTimeout(t);
      reject(new Error(`${name} exited early: ${code} ${sig}`));
    });
  });
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Open fds of this process. */
export function countFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Shared-memory mappings of this process that belong to the layer (memfd segments). */
export function countVlsMappings(): number {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes('memfd:node-vls') || l.includes('memfd:vls-ct')).length;
}

/** Resident set size in bytes. */
export function rss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Everything left in a namespace dir besides the lock and the ep folder. */
export function leftovers(runtime: string, ns = 'default'): string[] {
  const dir = path.join(runtime, ns);
  if (!fs.existsSync(dir)) return [];
  const top = fs.readdirSync(dir).filter((n) => n !== '.lock' && n !== 'ep');
  const ep = fs.existsSync(path.join(dir, 'ep')) ? fs.readdirSync(path.join(dir, 'ep')).map((n) => `ep/${n}`) : [];
  return [...top, ...ep];
}

/** Deterministic PRNG (xorshift32) so a failing transfer can be replayed. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
