/* Differential tests: the same scenario on plain Node and through the layer must give the same
 * events, bytes and error codes. Real processes on both sides. */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { preload, runSide as runFixture } from './fixtures/differential';
import { exited, tmpRuntime } from './fixtures/helpers';

const scenario = path.join(__dirname, 'fixtures', 'scenario.js');
/** [through the layer?, the client socket's handle class] of every client run */
let handles: [boolean, string][] = [];

function runSide(layer: boolean, args: string[], env: NodeJS.ProcessEnv, onReady?: () => void): Promise<unknown[]> {
  return runFixture(scenario, layer, args, env, onReady).then((r) => {
    for (const [, cls] of r.handles) handles.push([layer, cls]);
    return r.log as unknown[];
  });
}

async function pair(layer: boolean, name: string, port: number, runtime: string): Promise<{ s: unknown[]; c: unknown[] }> {
  const env = { VLS_RUNTIME_DIR: runtime };
  let startClient!: () => void;
  const ready = new Promise<void>((r) => (startClient = r));
  const server = runSide(layer, ['server', name, String(port)], env, startClient);
  await ready;
  const c = await runSide(layer, ['client', name, String(port)], env);
  const s = await server;
  return { s, c };
}

const names = ['echo', 'halfopen', 'autoend', 'reset', 'destroyerr', 'backpressure', 'addresses', 'timeout', 'pauseresume', 'serverclose', 'connopts', 'maxconn'];

for (const [i, name] of names.entries()) {
  t.test(`differential: ${name}`, async (t) => {
    const runtime = tmpRuntime();
    const port = 22100 + i;
    handles = [];
    const plain = await pair(false, name, port, runtime);
    const layered = await pair(true, name, port + 50, runtime);
    t.same(handles, [[false, 'TCP'], [true, 'SessionHandle']], 'plain ran on TCP, the layer on a session');
    // Ephemeral ports differ between runs; what must hold is that both ends agree.
    const norm = (log: unknown[]): unknown[] =>
      log.map((e) => {
        const a = e as unknown[];
        return a[1] === 'remotePort' || a[1] === 'localPort' ? [a[0], a[1], 'N'] : a;
      });
    if (name === 'addresses') {
      for (const run of [plain, layered]) {
        const cl = run.c.find((e) => (e as unknown[])[1] === 'localPort') as unknown[];
        const sr = run.s.find((e) => (e as unknown[])[1] === 'remotePort') as unknown[];
        t.equal(cl[2], sr[2], 'client localPort === server remotePort');
      }
    }
    t.same(norm(layered.c), norm(plain.c), 'client saw the same events');
    t.same(norm(layered.s), norm(plain.s), 'server saw the same events');
    fs.rmSync(runtime, { recursive: true, force: true });
  });
}

for (const [i, name] of ['echo', 'halfopen', 'reset', 'destroyerr', 'backpressure', 'pauseresume', 'serverclose'].entries()) {
  t.test(`differential, both ends in one process: ${name}`, async (t) => {
    const runtime = tmpRuntime();
    const env = { VLS_RUNTIME_DIR: runtime };
    handles = [];
    const plain = (await runSide(false, ['both', name, String(22400 + i)], env)) as unknown as { s: unknown[]; c: unknown[] };
    const layered = (await runSide(true, ['both', name, String(22450 + i)], env)) as unknown as { s: unknown[]; c: unknown[] };
    t.same(handles, [[false, 'TCP'], [true, 'SessionHandle']], 'plain ran on TCP, the layer on a session');
    t.same(layered.c, plain.c, 'client side');
    t.same(layered.s, plain.s, 'server side');
    fs.rmSync(runtime, { recursive: true, force: true });
  });
}

t.test('differential: an AbortSignal aborts the connect', async (t) => {
  const runtime = tmpRuntime();
  const plain = await runSide(false, ['client', 'abort', '22198'], { VLS_RUNTIME_DIR: runtime });
  const layered = await runSide(true, ['client', 'abort', '22198'], { VLS_RUNTIME_DIR: runtime });
  t.same(layered, plain);
  t.match(plain, [['c', 'error', 'ABORT_ERR']]);
  fs.rmSync(runtime, { recursive: true, force: true });
});

t.test('differential: ECONNREFUSED to a port nobody listens on', async (t) => {
  const runtime = tmpRuntime();
  const plain = await runSide(false, ['refused', 'echo', '22199'], { VLS_RUNTIME_DIR: runtime });
  const layered = await runSide(true, ['refused', 'echo', '22199'], { VLS_RUNTIME_DIR: runtime });
  t.same(layered, plain);
  t.match(plain, [['c', 'error', 'ECONNREFUSED', -111, 'connect', '127.0.0.1', 22199], ['c', 'close', true]]);
  fs.rmSync(runtime, { recursive: true, force: true });
});

// The layer keeps a list of the sockets it saw (for vls stat): a closed one must leave it, or it
// stays reachable, outlives young GCs and is promoted with all it refers to. An open cut-through
// connection must not keep its connect call's scope either (a listener left on its session did).
t.test('differential: closed sockets are not kept alive, nor connect options by open ones', async (t) => {
  const runtime = tmpRuntime();
  const retain = path.join(__dirname, 'fixtures', 'retain.js');
  const plain = await runFixture(retain, false, ['40'], { VLS_RUNTIME_DIR: runtime });
  const layered = await runFixture(retain, true, ['40'], { VLS_RUNTIME_DIR: runtime });
  t.same(layered.log, plain.log, 'the same sockets were made and collected');
  t.same(
    plain.log,
    { clients: 80, servers: 50, codes: { ECONNREFUSED: 40 }, aliveClients: 0, aliveServers: 0, aliveOptions: 0 },
    'none is left, and open connections keep no connect options',
  );
  t.same([plain.handles, layered.handles], [[['', 'TCP']], [['', 'SessionHandle']]], 'plain Node on TCP, the layer cut-through');
  fs.rmSync(runtime, { recursive: true, force: true });
});

/** The example echo server, preloaded, on `port` in a private runtime dir; stop() ends both. */
async function preloadedEchoServer(port: number): Promise<{ env: NodeJS.ProcessEnv; stop(): Promise<void> }> {
  const runtime = tmpRuntime();
  const env = { ...process.env, VLS_RUNTIME_DIR: runtime };
  const srv = spawn(process.execPath, ['--require', preload, path.join(__dirname, '..', 'examples', 'echo-server.js'), String(port)], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((r) => srv.stdout.on('data', () => r()));
  return {
    env,
    async stop() {
      srv.kill();
      await exited(srv);
      fs.rmSync(runtime, { recursive: true, force: true });
    },
  };
}

// One peer's sessions share one segment of VLS_SEGMENT_SIZE bytes of address space: at the
// default it holds tens of thousands (at 1 GiB it held 2,044, and the rest of a load generator's
// connections went over the kernel).
t.test('at the default settings, 2,500 connections between two processes are all cut-through and all echo', async (t) => {
  const { env, stop } = await preloadedEchoServer(22202);
  const code = `
    const net = require('net');
    const open = [];
    const kinds = {};
    let echoed = 0;
    const one = () => new Promise((resolve, reject) => {
      const s = net.connect(22202, '127.0.0.1', () => s.write('x'));
      s.once('data', (d) => { if (d.toString() === 'x') echoed++; resolve(); });
      s.on('error', reject);
      open.push(s);
    });
    (async () => {
      for (let i = 0; i < 2500; i += 100) await Promise.all(Array.from({ length: 100 }, one));
      for (const s of open) kinds[s._handle.constructor.name] = (kinds[s._handle.constructor.name] || 0) + 1;
      console.log(JSON.stringify({ kinds, echoed }));
      for (const s of open) s.destroy();
    })();`;
  const r = spawnSync(process.execPath, ['--require', preload, '-e', code], { env, timeout: 60_000 });
  t.equal(r.status, 0, `client exit 0 (stderr: ${r.stderr.toString().slice(-1000)})`);
  t.same(JSON.parse(r.stdout.toString()), { kinds: { SessionHandle: 2500 }, echoed: 2500 });
  await stop();
});

t.test('cut-through is really used: no kernel TCP connection between intercepted processes', async (t) => {
  const { env, stop } = await preloadedEchoServer(22201);
  const code = `
    const net = require('net');
    const c = net.connect(22201, '127.0.0.1', () => {
      c.write('x');
      c.once('data', () => {
        const ss = require('child_process').spawnSync('ss', ['-tnH', 'state', 'established', '( dport = :22201 or sport = :22201 )']);
        console.log(JSON.stringify({ ss: ss.stdout ? ss.stdout.toString() : null, err: ss.error ? ss.error.code : null }));
        c.end();
      });
    });`;
  const layered = spawnSync(process.execPath, ['--require', preload, '-e', code], { env });
  const r = JSON.parse(layered.stdout.toString()) as { ss: string | null; err: string | null };
  if (r.err === 'ENOENT') t.skip('ss (iproute2) is not installed');
  else t.equal(r.ss?.trim(), '', 'ss shows no established TCP connection on the port');
  const plain = spawnSync(process.execPath, ['-e', code], { env });
  const p = JSON.parse(plain.stdout.toString()) as { ss: string | null; err: string | null };
  if (p.err !== 'ENOENT') t.match(p.ss, /22201/, 'a plain client does use a kernel TCP connection');
  await stop();
});
