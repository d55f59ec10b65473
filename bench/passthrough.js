#!/usr/bin/env node
// Overhead of the layer on connections it passes to the kernel (the peer is not intercepted):
// a plain-Node echo server; the same client run on plain Node and through the preload, alternating
// A B A B, each doing N sequential connect + 64-byte echo + close, and a 64-byte ping-pong.
//   node bench/passthrough.js [--conns N] [--rounds R]
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');

const args = process.argv.slice(2);
const arg = (k, d) => (args.includes(k) ? Number(args[args.indexOf(k) + 1]) : d);

if (args[0] === 'client') {
  const port = Number(args[1]);
  const conns = Number(args[2]);
  const one = () =>
    new Promise((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1', () => c.write(Buffer.alloc(64)));
      c.once('data', () => {
        c.destroy();
        resolve();
      });
      c.on('error', reject);
    });
  (async () => {
    for (let i = 0; i < 200; i++) await one();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < conns; i++) await one();
    const perConn = Number(process.hrtime.bigint() - t0) / 1e3 / conns;
    const c = net.connect(port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    c.setNoDelay(true);
    const n = 20000;
    let i = 0;
    let t1;
    await new Promise((resolve) => {
      c.on('data', () => {
        if (++i === 2000) t1 = process.hrtime.bigint();
        if (i === n) return resolve();
        c.write(Buffer.alloc(64));
      });
      c.write(Buffer.alloc(64));
    });
    const rtt = Number(process.hrtime.bigint() - t1) / 1e3 / (n - 2000);
    c.destroy();
    process.stdout.write(JSON.stringify({ perConn, rtt }) + '\n');
  })();
  return;
}

const conns = arg('--conns', 2000);
const rounds = arg('--rounds', 4);
const runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'vls-pt-'));
const server = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  const preload = path.join(__dirname, '..', 'preload', 'index.js');
  const res = { plain: [], layer: [] };
  for (let r = 0; r < rounds; r++) {
    for (const side of ['plain', 'layer']) {
      const out = await new Promise((resolve) => {
        const p = spawn(process.execPath, [...(side === 'layer' ? ['--require', preload] : []), __filename, 'client', String(port), String(conns)], {
          env: { ...process.env, VLS_RUNTIME_DIR: runtime },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let s = '';
        p.stdout.on('data', (d) => (s += d));
        p.on('exit', () => resolve(JSON.parse(s)));
      });
      res[side].push(out);
    }
  }
  const med = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const pc = { plain: med(res.plain.map((x) => x.perConn)), layer: med(res.layer.map((x) => x.perConn)) };
  const rt = { plain: med(res.plain.map((x) => x.rtt)), layer: med(res.layer.map((x) => x.rtt)) };
  console.log(`passthrough to a plain-Node server, median of ${rounds} alternating rounds (µs)`);
  console.log(`                         plain    layer    layer/plain`);
  console.log(`connect+echo+close   ${pc.plain.toFixed(1).padStart(8)} ${pc.layer.toFixed(1).padStart(8)}    ${(pc.layer / pc.plain).toFixed(3)}x`);
  console.log(`ping-pong round trip ${rt.plain.toFixed(2).padStart(8)} ${rt.layer.toFixed(2).padStart(8)}    ${(rt.layer / rt.plain).toFixed(3)}x`);
  server.close();
  fs.rmSync(runtime, { recursive: true, force: true });
});
