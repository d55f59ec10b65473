/**
 * The processes of an A/B run: the server under test and the load generator. Each starts in its
 * own process group (detached), so a Ctrl-C at the terminal reaches only the tool, which stops
 * them itself, and so stopping a server stops whatever it started too (`sh -c ...`, npm, a
 * cluster). Every child is recorded in `live` until it has exited; an `exit` hook SIGKILLs the
 * groups still there, whatever way the tool leaves.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';

import { AbError } from './errors';
import type { AbPlacement } from './types';

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    /* the group is gone already */
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAllSync);
}

/** SIGKILLs every child of the tool still running (their whole process groups). */
export function killAllSync(): void {
  for (const c of live) killGroup(c.pid, 'SIGKILL');
  live.clear();
}

/** The last bytes a stream wrote (what a failed server or client said before it went). */
class Tail {
  private text = '';
  constructor(private readonly limit = 4096) {}
  push(d: Buffer | string): void {
    this.text += d.toString();
    if (this.text.length > 2 * this.limit) this.text = this.text.slice(-this.limit);
  }
  get(): string {
    const t = this.text.slice(-this.limit);
    const lines = t.split('\n');
    return lines.slice(-20).join('\n').trim();
  }
}

/** A started child: its process, output tails and exit. */
export class Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  private readonly out = new Tail();
  private readonly err = new Tail();
  /** Exit code and signal, once exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Set when the tool itself stops it (its exit is then expected). */
  stopping = false;
  readonly exited: Promise<void>;
  private spawnError: Error | undefined;

  constructor(argv: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; ipc?: boolean }) {
    installExitHook();
    const [cmd, ...args] = argv as [string, ...string[]];
    this.child = spawn(cmd, args, {
      env: opts.env,
      cwd: opts.cwd,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', ...(opts.ipc ? (['ipc'] as const) : [])],
    });
    live.add(this.child);
    this.pid = this.child.pid ?? -1;
    this.child.stdout!.on('data', (d: Buffer) => this.out.push(d));
    this.child.stderr!.on('data', (d: Buffer) => this.err.push(d));
    this.exited = new Promise((resolve) => {
      this.child.once('error', (e) => {
        // spawn failed (ENOENT, EACCES): there will be no 'exit'.
        this.spawnError = e;
        if (this.child.pid === undefined) {
          this.exit = { code: null, signal: null };
          live.delete(this.child);
          resolve();
        }
      });
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this.child);
        // Whatever it left in its group goes with it.
        killGroup(this.child.pid, 'SIGKILL');
        resolve();
      });
    });
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** How it ended, for messages: "exit code 1", "signal SIGSEGV", "spawn sh ENOENT". */
  describeExit(): string {
    if (this.spawnError) return this.spawnError.message;
    if (!this.exit) return 'still running';
    return this.exit.signal ? `killed by ${this.exit.signal}` : `exit code ${this.exit.code}`;
  }

  /** What it printed last: its stderr, or its stdout when stderr is empty. */
  output(): string {
    return this.err.get() || this.out.get();
  }

  /** Stops the whole group: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    this.stopping = true;
    if (!this.running) return;
    killGroup(this.pid, 'SIGTERM');
    await within(this.exited, graceMs);
    if (this.running) {
      killGroup(this.pid, 'SIGKILL');
      await this.exited;
    }
  }
}

/** Connects to host:port once; true if something accepted the connection. */
export function probeConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Whether host:port is taken: something accepts connections there, or we cannot bind it. */
export async function portInUse(host: string, port: number): Promise<string | undefined> {
  if (await probeConnect(host, port)) return `something accepts connections on ${host}:${port}`;
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => {
      resolve(e.code === 'EADDRINUSE' ? `${host}:${port} is bound by another socket (EADDRINUSE)` : undefined);
    });
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(undefined)));
  });
}

/** Resolves after ms, or rejects with the signal's reason. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Waits for p at most ms (the timer does not outlive the wait); true if p settled first. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => (t = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(t);
  }
}

/** Waits until the server's port accepts a connection; fails if the server exits or the time runs out. */
export async function waitForPort(server: Proc, host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!server.running) {
      throw new AbError(
        'ERR_VLS_AB_SERVER_EXITED',
        `the server exited before ${host}:${port} accepted connections (${server.describeExit()})`,
        server.output(),
      );
    }
    if (await probeConnect(host, port, 500)) return;
    if (!server.running) continue; // report the exit, not a timeout
    if (Date.now() >= deadline) {
      throw new AbError(
        'ERR_VLS_AB_SERVER_TIMEOUT',
        `the server did not accept connections on ${host}:${port} within ${timeoutMs / 1000} s ` +
          '(does it listen on that port and address? see --port, --host, --start-timeout)',
        server.output(),
      );
    }
    await sleep(25, signal);
  }
}

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const v = Number(r.stdout?.trim());
    clkTck = Number.isInteger(v) && v > 0 ? v : 100;
  }
  return clkTck;
}

/** utime + stime (clock ticks) of `root` and all its descendants, by pid. */
export function treeCpuTicks(root: number): Map<number, number> {
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  let names: string[] = [];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return ticks;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${n}/stat`, 'latin1');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid ... : comm may hold spaces and parentheses, so split after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pid = Number(n);
    parent.set(pid, Number(f[1]));
    ticks.set(pid, Number(f[11]) + Number(f[12]));
  }
  const out = new Map<number, number>();
  for (const [pid, t] of ticks) {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; p = parent.get(p), hops++) {
      if (p === root) {
        out.set(pid, t);
        break;
      }
    }
  }
  return out;
}

/** CPU seconds the tree used between two treeCpuTicks() snapshots (processes born meanwhile count from 0). */
export function cpuSecondsBetween(before: Map<number, number>, after: Map<number, number>): number {
  let ticks = 0;
  for (const [pid, t] of after) ticks += Math.max(0, t - (before.get(pid) ?? 0));
  return ticks / ticksPerSecond();
}

function allowedCpus(): Set<number> | undefined {
  try {
    const m = /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (!m) return undefined;
    const s = new Set<number>();
    for (const part of (m[1] as string).split(',')) {
      const [a, b] = part.split('-').map(Number) as [number, number | undefined];
      for (let i = a; i <= (b ?? a); i++) s.add(i);
    }
    return s;
  } catch {
    return undefined;
  }
}

function findInPath(cmd: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '/usr/bin:/bin').split(':')) {
    const f = `${dir || '.'}/${cmd}`;
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** The argv prefixes that pin the server and the client for a placement (taskset), checked here. */
export function placementPrefixes(placement: AbPlacement, env: NodeJS.ProcessEnv): { server: string[]; client: string[] } {
  if (placement === 'unpinned') return { server: [], client: [] };
  const taskset = findInPath('taskset', env);
  if (!taskset) {
    throw new AbError('ERR_VLS_AB_PLACEMENT', `--placement ${placement} needs taskset (util-linux), which is not in PATH`);
  }
  const need = placement === 'same' ? [0] : [0, 1];
  const cpus = allowedCpus();
  const missing = cpus ? need.filter((c) => !cpus.has(c)) : [];
  if (missing.length > 0) {
    throw new AbError(
      'ERR_VLS_AB_PLACEMENT',
      `--placement ${placement} needs CPU ${need.join(' and ')}, but this process may only run on CPUs ${[...cpus!].join(',')}`,
    );
  }
  return placement === 'same'
    ? { server: [taskset, '-c', '0'], client: [taskset, '-c', '0'] }
    : { server: [taskset, '-c', '0'], client: [taskset, '-c', '1'] };
}
