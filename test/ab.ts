/* `vls ab`: the real command on real servers and clients (short rounds), its JSON and HTML, the
 * --server wrapping for echo and http, and every error path with its code and no process left. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';

import { runAb } from '../src/ab';
import { abMain } from '../src/ab/cli';
import type { AbLatency, AbResult, AbRound } from '../src/ab';
import { sleep } from './fixtures/helpers';

const bin = path.join(__dirname, '..', 'bin', 'vls.js');
const fixture = path.join(__dirname, 'fixtures', 'ab-server.js');
const FAST = ['--duration', '0.3', '--rounds', '2', '--warmup', '0.1'];

/** Pids of live processes whose environment carries this tag (everything a run started). */
function tagged(tag: string): number[] {
  const out: number[] = [];
  for (const n of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      if (fs.readFileSync(`/proc/${n}/environ`, 'latin1').includes(`VLS_AB_TEST_TAG=${tag}\0`)) out.push(Number(n));
    } catch {
      /* gone, or not ours */
    }
  }
  return out;
}

/** Waits (a little) for every tagged process to be gone; returns those that stayed. */
async function leftovers(tag: string): Promise<number[]> {
  for (let i = 0; i < 40; i++) {
    const l = tagged(tag);
    if (l.length === 0) return l;
    await sleep(50);
  }
  return tagged(tag);
}

let tagSeq = 0;
interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  tag: string;
}

/** Runs `vls ab <args>` as a real process; `during` gets the child while it runs. */
function vlsAb(args: string[], env: NodeJS.ProcessEnv = {}, during?: (child: ReturnType<typeof spawn>) => void): Promise<Run> {
  const tag = `${process.pid}-${++tagSeq}`;
  const child = spawn(process.execPath, [bin, 'ab', ...args], {
    env: { ...process.env, ...env, VLS_AB_TEST_TAG: tag },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  during?.(child);
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, tag })));
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vls-ab-t-'));
}

function pidsIn(file: string): number[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : [];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every number in the result is finite, every latency set is ordered, every field is there. */
function checkResult(t: Tap.Test, r: AbResult, rounds: number): void {
  t.equal(r.schema, 'node-vls/ab@1');
  t.ok(Date.parse(r.startedAt) <= Date.parse(r.finishedAt), 'start before finish');
  t.match(r.environment, { node: process.version, vls: String, platform: 'linux', cpus: Number, cpuModel: String, loadavg: Array });
  t.match(r.units, { latency: 'us', throughput: String, cpuPerOp: String });
  const numbers: [string, unknown][] = [];
  const walk = (v: unknown, at: string): void => {
    if (typeof v === 'number') numbers.push([at, v]);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}[${i}]`));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, `${at}.${k}`);
  };
  walk(r, 'result');
  const bad = numbers.filter(([, v]) => !Number.isFinite(v as number));
  t.same(bad, [], 'every number is finite');
  const ordered = (l: AbLatency, at: string): void => {
    t.ok(l.count > 0, `${at}: samples recorded`);
    const seq = [l.min, l.p50, l.p90, l.p99, l.p999, l.max];
    t.ok(seq.every((v, i) => v > 0 && (i === 0 || v >= (seq[i - 1] as number))), `${at}: min <= p50 <= p90 <= p99 <= p99.9 <= max (${seq.join(' ')})`);
  };
  // A connection that stalls (the layer lost a wake-up, say) is the layer's failure, not the
  // tool's: the tool must report it (a warning, `unfinished`), and the checks below skip that round.
  const stalls = r.warnings.filter((w) => /stuck|no operation completed/.test(w));
  if (stalls.length > 0) t.comment(`a stall was reported (not a failure of vls ab): ${stalls.join(' | ')}`);
  for (const side of ['A', 'B'] as const) {
    const s = r.sides[side];
    t.equal(s.side, side);
    t.equal(s.rounds.length, rounds, `${side}: one entry per round`);
    s.rounds.forEach((x: AbRound, i: number) => {
      t.match(x, { round: i + 1, side, ops: Number, bytes: Number, seconds: Number, throughput: Number, reconnects: 0, unfinished: Number, histogram: String });
      t.match(x.cpu, { clientSec: Number, serverSec: Number, clientPerOp: Number, serverPerOp: Number });
      if (x.ops === 0) {
        t.ok(stalls.some((w) => w.startsWith(`${side} round ${i + 1}: no operation completed`)), `${side} round ${i + 1}: an empty window is reported`);
        return;
      }
      t.ok(x.ops > 0 && x.seconds > 0 && x.throughput > 0, `${side} round ${i + 1}: operations measured`);
      ordered(x.latency, `${side} round ${i + 1}`);
    });
    if (s.merged.ops > 0) ordered(s.merged.latency, `${side} merged`);
    t.equal(s.merged.latency.count, s.rounds.reduce((a, x) => a + x.latency.count, 0), `${side}: merged histogram holds every round's samples`);
    if (s.merged.ops > 0) t.ok(s.curve.length > 2, `${side}: percentile curve`);
    t.ok(s.curve.every(([p, v], i) => i === 0 || (p > (s.curve[i - 1] as [number, number])[0] && v >= (s.curve[i - 1] as [number, number])[1])), `${side}: curve is monotonic`);
  }
  t.equal(r.sides.A.merged.transport.kind, 'tcp', 'A ran over kernel TCP');
  t.same(Object.keys(r.sides.A.merged.transport.handles), ['TCP']);
  t.equal(r.sides.B.merged.transport.kind, 'cut-through', 'B ran cut-through');
  t.same(Object.keys(r.sides.B.merged.transport.handles), ['SessionHandle']);
  t.ok(r.sides.B.rounds.every((x) => x.published === true), 'B: the server published its endpoint every round');
  t.ok(r.sides.A.rounds.every((x) => x.published === undefined), 'A: nothing published');
  for (const m of ['p50', 'p90', 'p99', 'p999', 'max', 'throughput', 'clientCpuPerOp']) {
    const ra = r.ratios[m as keyof AbResult['ratios']];
    if (stalls.length > 0) t.ok(ra.min === null || ra.max === null || ra.min <= ra.max, `ratio ${m}: min <= max`);
    else t.ok(ra.merged !== null && ra.min !== null && ra.max !== null && ra.min <= ra.max, `ratio ${m} present, min <= max`);
  }
  t.same(r.warnings.filter((w) => !stalls.includes(w)), [], 'no other warnings (transport, publish, status)');
}

t.test('the built-in example: table, JSON and an HTML report with plots and no external URL', async (t) => {
  const dir = tmpDir();
  const json = path.join(dir, 'r.json');
  const html = path.join(dir, 'r.html');
  const run = await vlsAb([...FAST, '--json', json, '--html', html]);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /vls ab: echo ping-pong, 64 B messages/);
  t.match(run.stdout, /latency p50 \(µs\)\s+[\d.,]+\s+[\d.,]+\s+[\d.]+x\s+[\d.]+-[\d.]+x/);
  t.match(run.stdout, /transport \(client sockets\)\s+tcp\s+cut-through/);
  t.match(run.stderr, /round 1\/2 A: p50 [\d.,]+ µs.*tcp\nround 1\/2 B: .*cut-through\nround 2\/2 A:.*\nround 2\/2 B:/, 'one plain progress line per side and round (stderr is not a TTY)');
  const r = JSON.parse(fs.readFileSync(json, 'utf8')) as AbResult;
  checkResult(t, r, 2);
  t.match(r.options, { workload: 'echo', builtin: true, size: 64, connections: 1, rounds: 2, duration: 0.3, rate: null, placement: 'unpinned' });
  t.match(r.options.server[1], /examples[/]echo-server\.js$/);
  t.equal(r.units.throughput, 'msg/s');
  const page = fs.readFileSync(html, 'utf8');
  t.match(page, /^<!doctype html>/);
  t.ok((page.match(/<svg /g) ?? []).length >= 3, 'latency, throughput and CPU plots');
  t.match(page, /<path d="M[\d.]+,[\d.]+L/, 'the percentile curves are drawn');
  t.match(page, /<table>/);
  t.notMatch(page, /(https?:)?\/\/[a-z0-9]/i, 'no URL of any kind');
  t.notMatch(page, /<(script|link|img|iframe)\b/i, 'nothing loaded from elsewhere');
  t.same(await leftovers(run.tag), [], 'no process left');
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('bulk on the built-in sink, both on CPU 0: --json - writes the result to stdout and the table to stderr', async (t) => {
  const run = await vlsAb([...FAST, '--rounds', '1', '--workload', 'bulk', '--placement', 'same', '--json', '-']);
  t.equal(run.code, 0, run.stderr);
  const r = JSON.parse(run.stdout) as AbResult;
  checkResult(t, r, 1);
  t.equal(r.units.throughput, 'GB/s');
  t.match(r.options.server[1], /examples[/]sink-server\.js$/);
  t.ok(r.sides.A.merged.bytes === r.sides.A.merged.ops * 65536 && r.sides.B.merged.bytes === r.sides.B.merged.ops * 65536, 'bulk counts bytes of whole writes');
  t.match(run.stderr, /throughput \(GB\/s\)/);
  t.same(await leftovers(run.tag), []);
});

t.test('--server wraps a real echo server (open loop, 2 connections, split placement)', async (t) => {
  const dir = tmpDir();
  const pidFile = path.join(dir, 'pids');
  const run = await vlsAb(
    [...FAST, '--server', `node ${fixture} echo 24101`, '--port', '24101', '--client', 'echo', '--connections', '2', '--size', '300', '--rate', '2000', '--placement', 'split', '--json', '-', '--quiet'],
    { AB_PID_FILE: pidFile },
  );
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stderr, '', '--quiet: no progress, no table');
  const r = JSON.parse(run.stdout) as AbResult;
  checkResult(t, r, 2);
  t.match(r.options, { builtin: false, server: ['node', fixture, 'echo', '24101'], port: 24101, connections: 2, size: 300, rate: 2000, placement: 'split' });
  t.ok(r.sides.B.rounds.every((x) => x.transport.handles.SessionHandle === 2), 'both B connections cut-through');
  t.equal(pidsIn(pidFile).length, 4, 'a fresh server per side and round');
  t.ok(pidsIn(pidFile).every((p) => !alive(p)), 'every server stopped');
  t.same(await leftovers(run.tag), []);
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('--server wraps a real http server (chunked responses, POST bodies, path, --requests)', async (t) => {
  const run = await vlsAb(['--requests', '400', '--warmup', '0.1', '--rounds', '1', '--workload', 'http', '--port', '24102', '--connections', '2', '--path', '/x?y=1', '--size', '100', '--json', '-', '--quiet', '--', 'node', fixture, 'http', '24102']);
  t.equal(run.code, 0, run.stderr);
  const r = JSON.parse(run.stdout) as AbResult;
  checkResult(t, r, 1);
  t.match(r.options, { requests: 400, duration: null, path: '/x?y=1', size: 100 });
  t.ok([r.sides.A, r.sides.B].every((s) => s.rounds.every((x) => x.ops >= 400 && x.ops <= 401)), 'the window ends after --requests operations');
  t.equal(r.units.throughput, 'req/s');
  for (const s of [r.sides.A, r.sides.B]) {
    for (const x of s.rounds) t.same(Object.keys(x.status ?? {}), ['2xx'], `${s.side} round ${x.round}: every response 2xx`);
  }
  t.same(await leftovers(run.tag), []);
});

t.test('runAb() as a library: progress events, then an abort stops everything', async (t) => {
  const seen = new Set<string>();
  const r = await runAb({ duration: 0.2, warmup: 0, rounds: 1, onProgress: (e) => seen.add(`${e.side} ${e.phase}`) });
  t.equal(r.sides.A.rounds.length, 1);
  t.equal(r.sides.B.merged.transport.kind, 'cut-through');
  for (const k of ['A server', 'A client', 'A measure', 'A done', 'B server', 'B measure', 'B done']) t.ok(seen.has(k), `progress: ${k}`);

  const ac = new AbortController();
  const tag = `${process.pid}-lib`;
  let running = 0;
  const p = runAb({
    duration: 30,
    rounds: 1,
    env: { ...process.env, VLS_AB_TEST_TAG: tag },
    signal: ac.signal,
    onProgress: (e) => {
      if (e.phase !== 'measure' || ac.signal.aborted) return;
      running = tagged(tag).length;
      ac.abort(new Error('stop'));
    },
  });
  await t.rejects(p, { message: 'stop' });
  t.equal(running, 2, 'server and client were running when the abort came');
  t.same(await leftovers(tag), [], 'no child left');
  await t.rejects(runAb({ rounds: 0 }), { code: 'ERR_INVALID_ARG_VALUE' });
  await t.rejects(runAb({ server: 'node x.js' }), { code: 'ERR_MISSING_OPTION' });
  await t.rejects(runAb({ workload: 'bulk', rate: 10 }), { code: 'ERR_INVALID_ARG_VALUE' });
});

t.test('a server that exits before listening: ERR_VLS_AB_SERVER_EXITED with its stderr', async (t) => {
  const run = await vlsAb([...FAST, '--server', `node ${fixture} exit-early 24103`, '--port', '24103']);
  t.equal(run.code, 1);
  t.match(run.stderr, /ERR_VLS_AB_SERVER_EXITED/);
  t.match(run.stderr, /exit code 3/);
  t.match(run.stderr, /cannot open the frobnicator/, 'the tail of its stderr');
  const missing = await vlsAb([...FAST, '--server', 'no-such-command-vls-ab', '--port', '24103']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /ERR_VLS_AB_SERVER_EXITED.*\n?.*ENOENT|ENOENT[\s\S]*ERR_VLS_AB_SERVER_EXITED/);
  t.same(await leftovers(run.tag), []);
  t.same(await leftovers(missing.tag), []);
});

t.test('a port in use before the start: ERR_VLS_AB_PORT_IN_USE, the server never started', async (t) => {
  const dir = tmpDir();
  const pidFile = path.join(dir, 'pids');
  const squatter = net.createServer().listen(24104, '127.0.0.1');
  await new Promise((r) => squatter.once('listening', r));
  const run = await vlsAb([...FAST, '--server', `node ${fixture} echo 24104`, '--port', '24104'], { AB_PID_FILE: pidFile });
  squatter.close();
  t.equal(run.code, 1);
  t.match(run.stderr, /port 24104 is in use.*\(ERR_VLS_AB_PORT_IN_USE\)/s);
  t.same(pidsIn(pidFile), [], 'the server command was not run');
  t.same(await leftovers(run.tag), []);
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('a port that never opens: ERR_VLS_AB_SERVER_TIMEOUT, the server is stopped', async (t) => {
  const dir = tmpDir();
  const pidFile = path.join(dir, 'pids');
  const run = await vlsAb([...FAST, '--server', `node ${fixture} never-listen 24105`, '--port', '24105', '--start-timeout', '1.5'], { AB_PID_FILE: pidFile });
  t.equal(run.code, 1);
  t.match(run.stderr, /did not accept connections on 127\.0\.0\.1:24105 within 1\.5 s.*ERR_VLS_AB_SERVER_TIMEOUT/s);
  t.same(await leftovers(run.tag), []);
  t.ok(pidsIn(pidFile).length <= 1 && pidsIn(pidFile).every((p) => !alive(p)), 'the server was stopped');
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('a server that dies mid-run: ERR_VLS_AB_SERVER_DIED, the client is stopped', async (t) => {
  const run = await vlsAb(['--duration', '5', '--warmup', '0.1', '--server', `node ${fixture} die-after 24106 700`, '--port', '24106']);
  t.equal(run.code, 1);
  t.match(run.stderr, /the server exited while the client was running \(exit code 4\).*dying on purpose.*ERR_VLS_AB_SERVER_DIED/s);
  t.same(await leftovers(run.tag), []);
});

t.test('a server that stops answering: the round still ends, the stuck operation is reported', async (t) => {
  const run = await vlsAb(['--duration', '0.3', '--warmup', '0.1', '--rounds', '1', '--json', '-', '--quiet', '--server', `node ${fixture} stall-after 24109 3200`, '--port', '24109']);
  t.equal(run.code, 0, run.stderr);
  const r = JSON.parse(run.stdout) as AbResult;
  for (const side of ['A', 'B'] as const) {
    const x = r.sides[side].rounds[0]!;
    t.equal(x.ops, 0, `${side}: nothing completed in the window (the server stopped answering in the warmup)`);
    t.equal(x.unfinished, 1, `${side}: the outstanding operation is counted as unfinished`);
    t.equal(x.latency.count, 1, `${side}: and recorded with the time it had waited`);
    t.ok(r.warnings.some((w) => w.startsWith(`${side} round 1: no operation completed in the measured window (no completion in the window: connection 0 (`)), `${side}: warning with the connection's state`);
  }
  t.same(await leftovers(run.tag), []);
});

t.test('bad option values: a Node-style code, exit 2, nothing started', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--rounds', '0'], /'rounds' must be >= 1.*ERR_INVALID_ARG_VALUE/],
    [['--workload', 'ftp'], /'workload' must be one of echo, http, bulk.*ERR_INVALID_ARG_VALUE/],
    [['--placement', 'far'], /'placement' must be one of same, split, unpinned.*ERR_INVALID_ARG_VALUE/],
    [['--duration', 'soon'], /'duration' must be a number.*ERR_INVALID_ARG_VALUE/],
    [['--port', '70000', '--server', 'node x'], /'port' must be <= 65535.*ERR_INVALID_ARG_VALUE/],
    [['--server', 'node x'], /'port' is required.*ERR_MISSING_OPTION/],
    [['--server', 'node "x', '--port', '24107'], /unterminated double quote.*ERR_INVALID_ARG_VALUE/],
    [['--duration', '1', '--requests', '5'], /'requests' cannot be combined with 'duration'.*ERR_INVALID_ARG_VALUE/],
    [['--path', 'x'], /'path' must start with \/.*ERR_INVALID_ARG_VALUE/],
    [['--workload', 'bulk', '--rate', '100'], /'rate' is for echo and http.*ERR_INVALID_ARG_VALUE/],
    [['--html', '/no/such/dir/r.html'], /'html' names a file in \/no\/such\/dir.*ERR_INVALID_ARG_VALUE/],
    [['--client', 'http', '--workload', 'echo'], /'client' contradicts --workload echo.*ERR_INVALID_ARG_VALUE/],
    [['--frobnicate'], /Unknown option '--frobnicate'.*ERR_PARSE_ARGS_UNKNOWN_OPTION/],
  ];
  for (const [args, re] of cases) {
    let out = '';
    let err = '';
    const code = await abMain(args, {
      stdout: { write: (s: string) => ((out += s), true) } as unknown as NodeJS.WritableStream,
      stderr: { write: (s: string) => ((err += s), true) } as unknown as NodeJS.WritableStream,
    });
    t.equal(code, 2, args.join(' '));
    t.match(err, re, args.join(' '));
    t.match(err, /see: vls ab --help/);
    t.equal(out, '');
  }
  // the real command: exit status and message
  const run = await vlsAb(['--connections', '0']);
  t.equal(run.code, 2);
  t.match(run.stderr, /vls ab: The option 'connections' must be >= 1\. Received 0 \(ERR_INVALID_ARG_VALUE\)/);
  t.equal(run.stdout, '');
  t.same(await leftovers(run.tag), []);
  const help = await vlsAb(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /--placement <p>/);
});

t.test('SIGTERM or SIGINT to the tool mid-run: exit 143/130, every child stopped', async (t) => {
  for (const [sig, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    const dir = tmpDir();
    const pidFile = path.join(dir, 'pids');
    let sent = false;
    const run = await vlsAb(['--duration', '30', '--server', `node ${fixture} echo 24108`, '--port', '24108'], { AB_PID_FILE: pidFile }, (child) => {
      // once the server runs and the client has connected (it is then in the tagged set too)
      const poll = setInterval(() => {
        if (!sent && tagged(`${process.pid}-${tagSeq}`).length >= 3) {
          sent = true;
          clearInterval(poll);
          child.kill(sig);
        }
      }, 50);
      child.once('exit', () => clearInterval(poll));
    });
    t.ok(sent, `${sig} was sent while the run was under way`);
    t.equal(run.code, code, `${sig}: exit ${code}`);
    t.match(run.stderr, new RegExp(`interrupted by ${sig}`));
    t.same(await leftovers(run.tag), [], `${sig}: no process left`);
    t.ok(pidsIn(pidFile).every((p) => !alive(p)), `${sig}: the server is gone`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
