/* HTTP through the layer: unmodified servers and clients, curl over the kernel at the same time. */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { exited, startFixture, tmpRuntime } from './fixtures/helpers';

const preload = path.join(__dirname, '..', 'preload', 'index.js');
const fixtures = path.join(__dirname, 'fixtures');

t.test('10,000 keep-alive requests with checksummed bodies, server and client through the layer', async (t) => {
  const runtime = tmpRuntime();
  const env = { VLS_RUNTIME_DIR: runtime, NODE_OPTIONS: `--require=${preload}` };
  const { child } = await startFixture('http-checksum-server.js', ['22301'], env);
  const c = spawnSync(process.execPath, [path.join(fixtures, 'http-client.js'), '22301', '10000'], {
    env: { ...process.env, ...env },
    timeout: 120000,
  });
  const r = JSON.parse(c.stdout.toString()) as { ok: number; bad: number; sockets: number };
  t.equal(r.ok, 10000, 'every request and response body intact');
  t.equal(r.bad, 0);
  t.ok(r.sockets <= 4, `the agent reused its keep-alive sockets (${r.sockets})`);

  // curl, not intercepted, reaches the same server over the kernel meanwhile
  const curl = spawnSync('curl', ['-s', '-D', '-', '-H', 'x-want: 5', '--data', 'abc', 'http://127.0.0.1:22301/echo']);
  if (curl.error) t.skip('curl is not installed');
  else {
    const out = curl.stdout.toString();
    t.match(out, /x-body-sha256: ba7816bf/, 'curl over the kernel is served too');
  }
  // fetch (undici) through the layer
  const f = spawnSync(
    process.execPath,
    ['-e', `fetch('http://127.0.0.1:22301/echo',{method:'POST',body:'abc',headers:{'x-want':'3'}}).then(async r=>console.log(r.headers.get('x-body-sha256'), (await r.arrayBuffer()).byteLength))`],
    { env: { ...process.env, ...env } },
  );
  t.match(f.stdout.toString(), /^ba7816bf\w+ 3/, 'fetch works through the layer');
  child.kill('SIGTERM');
  await exited(child);
  fs.rmSync(runtime, { recursive: true, force: true });
});

t.test('VLS_DISABLE=1 leaves Node untouched; a layer that cannot start warns once and uses the kernel', async (t) => {
  const runtime = tmpRuntime();
  const code = `const net=require('net'); console.log(net.Socket.prototype.connect.name, net.Server.prototype.listen.name)`;
  const off = spawnSync(process.execPath, ['--require', preload, '-e', code], {
    env: { ...process.env, VLS_RUNTIME_DIR: runtime, VLS_DISABLE: '1' },
  });
  const plain = spawnSync(process.execPath, ['-e', code]).stdout.toString();
  t.equal(off.stdout.toString(), plain, 'original functions in place');
  const on = spawnSync(process.execPath, ['--require', preload, '-e', code], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } });
  t.equal(on.stdout.toString().trim(), 'vlsConnect vlsListen', 'patched when active');

  // an unusable namespace directory: the app still runs, one warning says why
  const bad = path.join(runtime, 'not-private');
  fs.mkdirSync(bad, { mode: 0o755 });
  fs.chmodSync(bad, 0o755);
  const warn = spawnSync(process.execPath, ['--require', preload, '-e', `${code}; require('net').createServer().listen(0, function(){ this.close() })`], {
    env: { ...process.env, VLS_RUNTIME_DIR: bad },
  });
  t.equal(warn.status, 0, 'the application ran');
  t.equal(warn.stdout.toString(), plain, 'on the kernel (nothing patched)');
  const warnings = warn.stderr.toString().match(/node-vls is not active/g) ?? [];
  t.equal(warnings.length, 1, 'one warning');
  t.match(warn.stderr.toString(), /mode 755/, 'saying why');
  const strict = spawnSync(process.execPath, ['--require', preload, '-e', code], {
    env: { ...process.env, VLS_RUNTIME_DIR: bad, VLS_STRICT: '1' },
  });
  t.not(strict.status, 0, 'VLS_STRICT=1 makes it an error');
  t.match(strict.stderr.toString(), /ERR_VLS_NAMESPACE_UNSAFE/);
  fs.rmSync(runtime, { recursive: true, force: true });
});

t.test('diagnostics_channel net.client.socket / net.server.socket fire for cut-through sockets', async (t) => {
  const runtime = tmpRuntime();
  const code = `
    const dc = require('diagnostics_channel'); const net = require('net');
    const seen = [];
    dc.subscribe('net.client.socket', ({socket}) => seen.push('client:' + (socket instanceof net.Socket)));
    dc.subscribe('net.server.socket', ({socket}) => seen.push('server:' + (socket instanceof net.Socket)));
    const srv = net.createServer((s) => { s.end('hi'); }).listen(22311, '127.0.0.1', () => {
      const c = net.connect(22311, '127.0.0.1');
      c.on('data', () => {}); c.on('close', () => { srv.close(); console.log(JSON.stringify(seen.sort())); });
    });`;
  const r = spawnSync(process.execPath, ['--require', preload, '-e', code], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } });
  const p = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } });
  t.same(JSON.parse(r.stdout.toString()), JSON.parse(p.stdout.toString()), 'the same publications as plain Node');
  t.same(JSON.parse(r.stdout.toString()), ['client:true', 'server:true']);
  fs.rmSync(runtime, { recursive: true, force: true });
});

t.test('a process whose only sessions are unref()d exits', async (t) => {
  const runtime = tmpRuntime();
  const { child } = await startFixture('http-checksum-server.js', ['22321'], { VLS_RUNTIME_DIR: runtime, NODE_OPTIONS: `--require=${preload}` });
  const code = `const c = require('net').connect(22321, '127.0.0.1', () => { c.unref(); console.log('connected'); });`;
  const r = spawn(process.execPath, ['--require', preload, '-e', code], { env: { ...process.env, VLS_RUNTIME_DIR: runtime }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  r.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const res = await Promise.race([exited(r), new Promise((resolve) => setTimeout(() => resolve('hung'), 10000))]);
  if (res === 'hung') r.kill();
  t.not(res, 'hung', 'the client exited on its own');
  t.equal(out.trim(), 'connected');
  child.kill('SIGTERM');
  await exited(child);
  fs.rmSync(runtime, { recursive: true, force: true });
});

t.test('listen(0) publishes the port the kernel chose; EADDRINUSE is the kernel\'s', async (t) => {
  const runtime = tmpRuntime();
  const code = `
    const net = require('net');
    const a = net.createServer((s) => s.end(String(s._handle && s._handle.constructor.name))).listen(0, '127.0.0.1', () => {
      const port = a.address().port;
      const b = net.createServer().listen(port, '127.0.0.1');
      b.on('error', (e) => {
        const c = net.connect(port, '127.0.0.1');
        let d = '';
        c.on('data', (x) => (d += x));
        c.on('close', () => { console.log(JSON.stringify({ code: e.code, syscall: e.syscall, errno: e.errno, served: d })); a.close(); });
      });
    });`;
  const run = (layer: boolean): { code: string; syscall: string; errno: number; served: string } =>
    JSON.parse(
      spawnSync(process.execPath, [...(layer ? ['--require', preload] : []), '-e', code], {
        env: { ...process.env, VLS_RUNTIME_DIR: runtime },
      }).stdout.toString(),
    ) as { code: string; syscall: string; errno: number; served: string };
  const plain = run(false);
  const layered = run(true);
  t.same({ ...layered, served: undefined }, { ...plain, served: undefined }, 'same EADDRINUSE error');
  t.equal(plain.served, 'TCP');
  t.equal(layered.served, 'SessionHandle', 'the port-0 listener was reached through a session');
  fs.rmSync(runtime, { recursive: true, force: true });
});

t.test('TLS keeps working, over the kernel', async (t) => {
  const runtime = tmpRuntime();
  const key = path.join(runtime, 'key.pem');
  const cert = path.join(runtime, 'cert.pem');
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost']);
  if (gen.error || gen.status !== 0) {
    t.skip('openssl is not available to make a test certificate');
    return;
  }
  const code = `
    const https = require('https'); const fs = require('fs');
    const srv = https.createServer({ key: fs.readFileSync(${JSON.stringify(key)}), cert: fs.readFileSync(${JSON.stringify(cert)}) }, (req, res) => res.end('secure ' + req.socket.encrypted))
      .listen(22330, '127.0.0.1', () => {
        https.get({ host: '127.0.0.1', port: 22330, rejectUnauthorized: false }, (res) => {
          let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => { console.log(b); srv.close(); });
        }).on('error', (e) => { console.log('error ' + e.code); srv.close(); });
      });`;
  const r = spawnSync(process.execPath, ['--require', preload, '-e', code], { env: { ...process.env, VLS_RUNTIME_DIR: runtime }, timeout: 30000 });
  t.equal(r.stdout.toString().trim(), 'secure true', r.stderr.toString().slice(0, 500));
  fs.rmSync(runtime, { recursive: true, force: true });
});
