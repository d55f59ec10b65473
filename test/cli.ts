import * as fs from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import t from 'tap';

import { exited, startFixture, tmpRuntime } from './fixtures/helpers';

const bin = path.join(__dirname, '..', 'bin', 'vls.js');

t.test('vls stat lists attached workers and their endpoints', async (t) => {
  const runtime = tmpRuntime();
  const { child, line } = await startFixture('echo-server.js', ['21101'], { VLS_RUNTIME_DIR: runtime });
  const r = spawnSync(process.execPath, [bin, 'stat', '--json'], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } });
  t.equal(r.status, 0);
  const report = JSON.parse(r.stdout.toString());
  const index = Number(line.split(' ')[1]);
  t.match(report, {
    namespace: 'default',
    workers: [{ index, alive: true }],
    endpoints: [{ proto: 'tcp', address: '127.0.0.1', port: 21101, worker: index, pid: child.pid }],
  });
  const text = spawnSync(process.execPath, [bin, 'stat'], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } });
  t.match(text.stdout.toString(), /tcp 127\.0\.0\.1:21101\s+worker \d+/);
  child.kill('SIGKILL');
  await exited(child);
  const after = JSON.parse(
    spawnSync(process.execPath, [bin, 'stat', '--json'], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } }).stdout.toString(),
  );
  t.same(after.endpoints, [], 'a killed worker\'s endpoint is recognised as stale and removed');
  t.match(after.workers, [{ index, alive: false }], 'its socket shows as stale');
  const bad = spawnSync(process.execPath, [bin, 'frobnicate']);
  t.equal(bad.status, 2);
  t.match(bad.stderr.toString(), /usage: vls stat/);
  fs.rmSync(runtime, { recursive: true, force: true });
});

t.test('vls stat shows each connection with its transport, reason, state, addresses, bytes and fifo fill', async (t) => {
  const runtime = tmpRuntime();
  const preload = path.join(__dirname, '..', 'preload', 'index.js');
  const env = { VLS_RUNTIME_DIR: runtime, NODE_OPTIONS: `--require=${preload}` };
  const { child: server } = await startFixture('http-checksum-server.js', ['21111'], env);
  // a plain (not intercepted) echo server, and a client that holds one cut-through connection and
  // one kernel connection to it
  const plain = spawn(process.execPath, ['-e', "require('net').createServer(s=>s.pipe(s)).listen(21112,'127.0.0.1',()=>console.log('up'))"], {
    env: { ...process.env, VLS_RUNTIME_DIR: runtime, VLS_DISABLE: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((r) => plain.stdout.once('data', () => r()));
  const code = `
    const net = require('net');
    const a = net.connect(21111, '127.0.0.1', () => a.write('GET / HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n'));
    a.once('data', () => {
      const b = net.connect(21112, '127.0.0.1', () => { b.write('hello'); b.once('data', () => console.log('ready')); });
    });
    process.on('SIGTERM', () => process.exit(0));`;
  const client = spawn(process.execPath, ['-e', code], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((r) => client.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && r()));
  const r = spawnSync(process.execPath, [bin, 'stat', '--json'], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } });
  const report = JSON.parse(r.stdout.toString()) as { workers: { pid: number; sessions: Record<string, unknown>[] }[] };
  const srvRow = report.workers.find((w) => w.pid === server.pid);
  const cliRow = report.workers.find((w) => w.pid === client.pid);
  t.ok(srvRow && cliRow, 'both workers answered');
  t.match(srvRow!.sessions, [{ side: 'server', transport: 'cut-through', reason: 'published', state: 'open', local: '127.0.0.1:21111', session: { state: 'READY', fifoSize: Number } }, { side: 'listener', transport: 'published' }]);
  const cs = cliRow!.sessions;
  t.match(cs.find((s) => s.remote === '127.0.0.1:21111'), { side: 'client', transport: 'cut-through', reason: 'published', bytesWritten: 27 });
  t.match(cs.find((s) => s.remote === '127.0.0.1:21112'), { side: 'client', transport: 'kernel', reason: 'not-published', bytesRead: 5 });
  const text = spawnSync(process.execPath, [bin, 'stat'], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } }).stdout.toString();
  t.match(text, /client\s+cut-through published\s+open\s+127\.0\.0\.1:\d+\s+-> 127\.0\.0\.1:21111/);
  t.equal(report.workers.filter((w) => w.pid === server.pid).length, 1, 'one worker per process');
  client.kill('SIGTERM');
  server.kill('SIGTERM');
  plain.kill('SIGTERM');
  await exited(plain);
  await exited(client);
  await exited(server);
  fs.rmSync(runtime, { recursive: true, force: true });
});
