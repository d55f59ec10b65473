#!/usr/bin/env node
// Node-level ping-pong between two processes: the session API (cut-through) beside plain `net`
// over loopback TCP and over a Unix socket, in the same run, for each CPU placement.
//   node bench/api-pingpong.js [--iters N] [--json]
// Prints p50/p99 round trip (64-byte messages) and connect time (connect -> usable) per transport.
'use strict';
const { spawn } = require('node:child_process');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const fs = require('node:fs');

const MSG = 64;

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// ---- server side ---------------------------------------------------------------------------
function serve(transport, where) {
  if (transport === 'vls') {
    const { attach } = require('../dist/src');
    const w = attach();
    const l = w.listen({ address: '127.0.0.1', port: Number(where) });
    const buf = Buffer.alloc(65536);
    l.on('connection', (s) => {
      s.on('readable', () => {
        for (;;) {
          let n;
          try {
            n = s.read(buf);
          } catch {
            s.close();
            return;
          }
          if (n === null) return;
          if (n === 0) {
            s.close();
            return;
          }
          s.write(buf, 0, n);
        }
      });
    });
  } else {
    const srv = net.createServer({ noDelay: true }, (c) => {
      c.setNoDelay(true);
      c.on('data', (d) => c.write(d));
      c.on('error', () => {});
    });
    if (transport === 'tcp') srv.listen(Number(where), '127.0.0.1');
    else srv.listen(where);
  }
  process.stdout.write('ready\n');
}

// ---- client side ---------------------------------------------------------------------------
async function client(transport, where, iters) {
  const out = { transport };
  const msg = Buffer.alloc(MSG, 7);
  if (transport === 'vls') {
    const { attach } = require('../dist/src');
    const w = attach();
    const connectOnce = () =>
      new Promise((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        const s = w.connect({ address: '127.0.0.1', port: Number(where) });
        s.once('connect', () => resolve([s, Number(process.hrtime.bigint() - t0) / 1e3]));
        s.once('error', reject);
      });
    const ct = [];
    for (let i = 0; i < 300; i++) {
      const [s, us] = await connectOnce();
      ct.push(us);
      s.close();
    }
    const [s] = await connectOnce();
    const buf = Buffer.alloc(65536);
    const rtts = new Float64Array(iters);
    await new Promise((resolve) => {
      let i = -2000;
      let t0 = process.hrtime.bigint();
      let got = 0;
      s.on('readable', () => {
        for (;;) {
          const n = s.read(buf);
          if (n === null || n === 0) return;
          got += n;
          if (got < MSG) continue;
          got -= MSG;
          const t1 = process.hrtime.bigint();
          if (i >= 0) rtts[i] = Number(t1 - t0) / 1e3;
          if (++i >= iters) return resolve();
          t0 = process.hrtime.bigint();
          s.write(msg);
        }
      });
      s.write(msg);
    });
    s.close();
    out.connect = ct.sort((a, b) => a - b);
    out.rtt = Array.from(rtts).sort((a, b) => a - b);
  } else {
    const opts = transport === 'tcp' ? { host: '127.0.0.1', port: Number(where), noDelay: true } : { path: where };
    const connectOnce = () =>
      new Promise((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        const c = net.connect(opts);
        c.once('connect', () => resolve([c, Number(process.hrtime.bigint() - t0) / 1e3]));
        c.once('error', reject);
      });
    const ct = [];
    for (let i = 0; i < 300; i++) {
      const [c, us] = await connectOnce();
      ct.push(us);
      c.destroy();
    }
    const [c] = await connectOnce();
    c.setNoDelay(true);
    const rtts = new Float64Array(iters);
    await new Promise((resolve) => {
      let i = -2000;
      let t0 = process.hrtime.bigint();
      let got = 0;
      c.on('data', (d) => {
        got += d.length;
        while (got >= MSG) {
          got -= MSG;
          const t1 = process.hrtime.bigint();
          if (i >= 0) rtts[i] = Number(t1 - t0) / 1e3;
          if (++i >= iters) return resolve();
          t0 = process.hrtime.bigint();
          c.write(msg);
        }
      });
      c.write(msg);
    });
    c.destroy();
    out.connect = ct.sort((a, b) => a - b);
    out.rtt = Array.from(rtts).sort((a, b) => a - b);
  }
  const r = { transport, rttP50: pct(out.rtt, 50), rttP99: pct(out.rtt, 99), connectP50: pct(out.connect, 50) };
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(0);
}

// ---- orchestration -------------------------------------------------------------------------
function run(cmd, args, env) {
  return spawn(cmd[0], [...cmd.slice(1), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
}

function lineFrom(child, pred) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('timeout')), 120000);
    child.stdout.on('data', (d) => {
      buf += d;
      for (const l of buf.split('\n')) {
        if (pred(l)) {
          clearTimeout(t);
          resolve(l);
        }
      }
    });
    child.on('exit', (code) => code && reject(new Error(`child exited ${code}`)));
  });
}

async function one(transport, placement, iters, runtime) {
  const port = 23000 + Math.floor(Math.random() * 2000); // below the ephemeral range
  const where = transport === 'unix' ? path.join(runtime, `pp-${port}.sock`) : String(port);
  const pin = (cpu) => (placement === 'unpinned' ? [process.execPath] : ['taskset', '-c', String(cpu), process.execPath]);
  const serverCpu = 0;
  const clientCpu = placement === 'split' ? 1 : 0;
  const env = { VLS_RUNTIME_DIR: runtime };
  const srv = run(pin(serverCpu), [__filename, 'server', transport, where], env);
  await lineFrom(srv, (l) => l === 'ready');
  const cli = run(pin(clientCpu), [__filename, 'client', transport, where, String(iters)], env);
  const line = await lineFrom(cli, (l) => l.startsWith('{'));
  srv.kill('SIGTERM');
  return JSON.parse(line);
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === 'server') return serve(args[1], args[2]);
  if (args[0] === 'client') return client(args[1], args[2], Number(args[3]));
  const iters = Number(args[args.indexOf('--iters') + 1]) || 20000;
  const json = args.includes('--json');
  const placements = os.cpus().length > 1 ? ['same-cpu', 'split', 'unpinned'] : ['same-cpu'];
  const runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'vls-bench-'));
  const results = [];
  for (const placement of placements) {
    for (const transport of ['tcp', 'unix', 'vls']) {
      const r = await one(transport, placement, iters, runtime);
      results.push({ placement, ...r });
      if (!json) process.stderr.write('.');
    }
  }
  fs.rmSync(runtime, { recursive: true, force: true });
  if (json) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    return;
  }
  process.stderr.write('\n');
  console.log(`Node-level 64-byte ping-pong, ${iters} round trips (µs); connect = connect() to usable`);
  console.log('placement  transport   rtt p50   rtt p99   vs tcp p50   connect p50');
  for (const r of results) {
    const tcp = results.find((x) => x.placement === r.placement && x.transport === 'tcp');
    console.log(
      `${r.placement.padEnd(10)} ${r.transport.padEnd(9)} ${r.rttP50.toFixed(2).padStart(9)} ${r.rttP99
        .toFixed(2)
        .padStart(9)} ${(r.rttP50 / tcp.rttP50).toFixed(2).padStart(11)}x ${r.connectP50.toFixed(1).padStart(12)}`,
    );
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
