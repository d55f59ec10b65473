/* cluster through the preload: a primary forks two workers, each an unmodified http server on the
 * same port (the primary shares the kernel port, round robin). Intercepted clients reach one worker
 * cut-through (the one whose endpoint is published); every request is answered, nothing is refused,
 * a worker that exits (killed or disconnected) leaves no endpoint behind, and a new worker takes
 * its place. Plain Node runs the same clients for comparison. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { preload, runSide } from './fixtures/differential';
import { exited, tmpRuntime } from './fixtures/helpers';

const app = path.join(__dirname, 'fixtures', 'cluster-app.js');
const client = path.join(__dirname, 'fixtures', 'cluster-client.js');

interface ClientResult {
  ok: number;
  bad: number;
  errors: Record<string, number>;
  pids: Record<string, number>;
  handles: Record<string, number>;
}

/** Lines of a child's stdout, and a way to wait (bounded) for one that matches. */
function lines(child: ChildProcess): (re: RegExp, what: string) => Promise<RegExpExecArray> {
  const seen: string[] = [];
  let waiters: (() => void)[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop() as string;
    seen.push(...parts);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  let from = 0;
  return (re, what) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`cluster: no "${what}" line (saw: ${seen.join(' | ')})`)), 20000);
      const look = (): void => {
        for (; from < seen.length; from++) {
          const m = re.exec(seen[from] as string);
          if (m) {
            from++;
            clearTimeout(timer);
            resolve(m);
            return;
          }
        }
        waiters.push(look);
      };
      look();
    });
}

/** The endpoint entries of the namespace: [file, pid]. */
function entries(runtime: string): [string, number][] {
  const dir = path.join(runtime, 'default', 'ep');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => !n.endsWith('.tmp'))
    .map((n) => [n, (JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as { pid: number }).pid]);
}

async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
  return cond();
}

async function requests(layer: boolean, runtime: string, port: number, n: number, c: number): Promise<ClientResult> {
  const r = await runSide(client, layer, [String(port), String(n), String(c)], { VLS_RUNTIME_DIR: runtime }, undefined, 60000);
  return r.log as ClientResult;
}

t.test('cluster: two workers share a port; every request is answered, worker exits leave nothing', async (t) => {
  const runtime = tmpRuntime();
  const port = 25800;
  // The workers inherit --require from the primary's execArgv, as any cluster would.
  const primary = spawn(process.execPath, ['--require', preload, app, String(port)], {
    env: { ...process.env, VLS_RUNTIME_DIR: runtime },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const next = lines(primary);
  const workers = [Number((await next(/^listening (\d+)$/, 'listening'))[1]), Number((await next(/^listening (\d+)$/, 'listening'))[1])];
  await next(/^ready$/, 'ready');

  // One endpoint entry, naming a worker (the primary's own round-robin listener is not published).
  const first = entries(runtime);
  t.equal(first.length, 1, 'one endpoint entry for the shared port');
  const publisher = first[0]?.[1] as number;
  t.ok(workers.includes(publisher), 'it names one of the workers');
  t.not(publisher, primary.pid, 'not the primary');

  const layered = await requests(true, runtime, port, 100, 8);
  t.same({ ok: layered.ok, bad: layered.bad, errors: layered.errors }, { ok: 100, bad: 0, errors: {} }, 'layer: every request answered');
  t.same(layered.handles, { SessionHandle: 100 }, 'layer: every connection cut-through');
  t.same(Object.keys(layered.pids), [String(publisher)], 'layer: served by the published worker');
  const plain = await requests(false, runtime, port, 100, 8);
  t.same({ ok: plain.ok, bad: plain.bad, errors: plain.errors }, { ok: 100, bad: 0, errors: {} }, 'plain: every request answered');
  t.same(plain.handles, { TCP: 100 }, 'plain: kernel TCP');
  t.ok(Object.keys(plain.pids).every((p) => workers.includes(Number(p))), 'plain: served by the workers (round robin)');

  // The published worker is killed (no chance to unpublish): the primary hears of the exit and
  // removes its entry; clients go through the kernel to the other worker, nothing refused.
  process.kill(publisher, 'SIGKILL');
  await next(new RegExp(`^exit ${publisher} null SIGKILL$`), 'exit of the killed worker');
  t.ok(await until(() => entries(runtime).length === 0), 'the killed worker\'s entry is gone');
  const survivor = workers.find((p) => p !== publisher) as number;
  const afterKill = await requests(true, runtime, port, 100, 8);
  t.same({ ok: afterKill.ok, errors: afterKill.errors }, { ok: 100, errors: {} }, 'after the kill: every request answered');
  t.same(afterKill.handles, { TCP: 100 }, 'after the kill: over the kernel (no entry)');
  t.same(Object.keys(afterKill.pids), [String(survivor)], 'by the surviving worker');

  // A new worker: it publishes the port, clients go cut-through to it.
  primary.send({ fork: true });
  const fresh = Number((await next(/^listening (\d+)$/, 'listening of the new worker'))[1]);
  t.same(entries(runtime).map(([, pid]) => pid), [fresh], 'the new worker published the port');
  const afterFork = await requests(true, runtime, port, 100, 8);
  t.same({ ok: afterFork.ok, errors: afterFork.errors, handles: afterFork.handles }, { ok: 100, errors: {}, handles: { SessionHandle: 100 } }, 'cut-through to the new worker');
  t.same(Object.keys(afterFork.pids), [String(fresh)]);

  // A worker that disconnects (graceful) unpublishes before it goes.
  primary.send({ disconnect: fresh });
  await next(new RegExp(`^exit ${fresh} 0 null$`), 'exit of the disconnected worker');
  t.same(entries(runtime), [], 'the disconnected worker\'s entry is gone with it');
  const afterDisconnect = await requests(true, runtime, port, 50, 4);
  t.same({ ok: afterDisconnect.ok, errors: afterDisconnect.errors }, { ok: 50, errors: {} }, 'every request answered');

  // A worker killed while a client is busy: connections it held fail as over TCP (reset), new ones
  // are served by the other worker; never ECONNREFUSED, never a hang.
  primary.send({ fork: true });
  const victim = Number((await next(/^listening (\d+)$/, 'listening of another new worker'))[1]);
  t.same(entries(runtime).map(([, pid]) => pid), [victim]);
  const busy = requests(true, runtime, port, 300, 8);
  await new Promise((r) => setTimeout(r, 150));
  process.kill(victim, 'SIGKILL');
  const underKill = await busy;
  t.equal(underKill.errors.ECONNREFUSED, undefined, 'no connection refused');
  t.equal(underKill.ok + underKill.bad + Object.values(underKill.errors).reduce((a, b) => a + b, 0), 300, 'every request finished');
  t.ok(Object.keys(underKill.errors).every((c) => c === 'ECONNRESET'), `only resets of connections the killed worker held (${JSON.stringify(underKill.errors)})`);
  t.equal(underKill.bad, 0, 'no answer was wrong');

  primary.send({ stop: true });
  const end = await exited(primary);
  t.same(end, { code: 0, signal: null }, 'the primary exited once its workers were gone');
  t.same(entries(runtime), [], 'no endpoint entry is left');
  fs.rmSync(runtime, { recursive: true, force: true });
});

// Regression: the primary published its own round-robin listener, and a client that reached it
// crashed the primary (its 'connection' listener is cluster's assert.fail). Workers without the
// layer publish nothing, so only the primary's entry could exist.
t.test('cluster: the primary\'s round-robin listener is never published', async (t) => {
  const runtime = tmpRuntime();
  const port = 25850;
  const primary = spawn(process.execPath, ['--require', preload, app, String(port)], {
    env: { ...process.env, VLS_RUNTIME_DIR: runtime, WORKERS_PLAIN: '1' },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const next = lines(primary);
  await next(/^ready$/, 'ready');
  t.same(entries(runtime), [], 'no endpoint entry: the primary published nothing');
  const r = await requests(true, runtime, port, 50, 4);
  t.same({ ok: r.ok, errors: r.errors, handles: r.handles }, { ok: 50, errors: {}, handles: { TCP: 50 } }, 'served over the kernel');
  primary.send({ stop: true });
  t.same(await exited(primary), { code: 0, signal: null }, 'the primary is fine and exits');
  fs.rmSync(runtime, { recursive: true, force: true });
});
