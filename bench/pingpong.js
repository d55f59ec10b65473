#!/usr/bin/env node
'use strict';
// 1. Ping-pong: a 64-byte request/response round trip between two processes over net.Socket.
//   node bench/pingpong.js [--quick] [--runs N] [--iters N] [--placements same,split,unpinned]
//                          [--variants tcp,unix,layer,nopoll,poll50,api] [--json]
//
// Variants (the same client and server scripts every time):
//   tcp     plain Node, loopback TCP            unix   plain Node, Unix-domain socket
//   layer   both processes --require preload, default settings: a cut-through session under a
//           genuine net.Socket (VLS_POLL_USEC=auto: an adaptive busy-poll window)
//   nopoll  layer with VLS_POLL_USEC=0: the loop sleeps after every message (a wake-up each)
//   poll50  layer with VLS_POLL_USEC=50: a fixed 50 µs window after every batch
//   api     the session API straight (no net.Socket on top): what net.Socket costs over the layer
// Round trips are timed one by one into an HDR histogram (ns); CPU time (user+sys) of both
// processes is taken over the same measured round trips.
const net = require('node:net');
const path = require('node:path');
const c = require('./lib/common');

const MSG = 64;

const VARIANTS = {
  tcp: { id: 'tcp', label: 'TCP (plain Node)', short: 'TCP' },
  unix: { id: 'unix', label: 'Unix socket (plain Node)', short: 'Unix' },
  layer: { id: 'layer', label: 'layer (preload, net.Socket)', short: 'layer', layer: true },
  nopoll: { id: 'nopoll', label: 'layer, VLS_POLL_USEC=0', short: 'nopoll', layer: true },
  poll50: { id: 'poll50', label: 'layer, VLS_POLL_USEC=50', short: 'poll50', layer: true },
  api: { id: 'api', label: 'layer session API (no net.Socket)', short: 'api', layer: true },
};

const options = { runs: 'int', iters: 'int', warmup: 'int', placements: 'list', variants: 'list' };

// ---- children --------------------------------------------------------------------------------

/** Echo server over net. Reports the CPU time it spent on round trips warm..warm+iters-1. */
function netServer(where, warm, iters) {
  const srv = net.createServer({ noDelay: true }, (sock) => {
    sock.setNoDelay(true);
    let bytes = 0;
    let cpu0 = null;
    sock.on('data', (d) => {
      bytes += d.length;
      sock.write(d);
      if (cpu0 === null && bytes >= warm * MSG) cpu0 = process.cpuUsage();
      if (cpu0 !== null && bytes >= (warm + iters) * MSG && bytes - d.length < (warm + iters) * MSG) {
        c.report('RESULT', { cpu: c.cpuSince(cpu0), handle: c.handleKind(sock) });
      }
    });
    sock.on('error', () => {});
  });
  const ready = () => c.report('READY', { port: srv.address().port, layer: c.layerActive() });
  if (where === 'tcp') srv.listen(0, '127.0.0.1', ready);
  else srv.listen(where, ready);
  c.onCommand(() => {});
}

/** Ping-pong client over net: warm round trips, then iters timed ones. */
function netClient(where, warm, iters) {
  const opts = /^\d+$/.test(where) ? { host: '127.0.0.1', port: Number(where), noDelay: true } : { path: where };
  const sock = net.connect(opts);
  const msg = Buffer.alloc(MSG, 7);
  sock.setNoDelay(true);
  const pp = c.pingPonger({
    size: MSG,
    warm,
    iters,
    send: () => sock.write(msg),
    done: (r) => c.report('RESULT', { ...r, handle: c.handleKind(sock), layer: c.layerActive() }),
  });
  sock.on('connect', () => pp.start());
  sock.on('data', (d) => pp.onBytes(d.length));
  sock.on('error', (e) => {
    process.stderr.write(`client: ${e.stack}\n`);
    process.exit(1);
  });
  c.onCommand(() => {});
}

/** Echo server on the session API (no preload, no net.Socket). */
function apiServer(warm, iters) {
  const { attach } = require(path.join(c.REPO, 'dist', 'src'));
  const w = attach();
  // The session API publishes an endpoint; take a kernel port so the number is really ours.
  const holder = net.createServer().listen(0, '127.0.0.1', () => {
    const port = holder.address().port;
    const l = w.listen({ address: '127.0.0.1', port });
    const buf = Buffer.alloc(65536);
    l.on('connection', (s) => {
      let bytes = 0;
      let cpu0 = null;
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
          bytes += n;
          if (cpu0 === null && bytes >= warm * MSG) cpu0 = process.cpuUsage();
          if (cpu0 !== null && bytes >= (warm + iters) * MSG && bytes - n < (warm + iters) * MSG) {
            c.report('RESULT', { cpu: c.cpuSince(cpu0), handle: 'VlsSession' });
          }
        }
      });
    });
    c.report('READY', { port, layer: true });
  });
  c.onCommand(() => {});
}

function apiClient(port, warm, iters) {
  const { attach } = require(path.join(c.REPO, 'dist', 'src'));
  const w = attach();
  const s = w.connect({ address: '127.0.0.1', port: Number(port) });
  if (!s) throw new Error(`nothing published on 127.0.0.1:${port}`);
  const msg = Buffer.alloc(MSG, 7);
  const buf = Buffer.alloc(65536);
  const pp = c.pingPonger({
    size: MSG,
    warm,
    iters,
    send: () => s.write(msg),
    done: (r) => c.report('RESULT', { ...r, handle: 'VlsSession', layer: true }),
  });
  s.on('connect', () => pp.start());
  s.on('readable', () => {
    for (;;) {
      const n = s.read(buf);
      if (n === null || n === 0 || !pp.onBytes(n)) return;
    }
  });
  s.on('error', (e) => {
    process.stderr.write(`api client: ${e.stack}\n`);
    process.exit(1);
  });
  c.onCommand(() => {});
}

// ---- orchestration ---------------------------------------------------------------------------

/** One run of one variant on one placement: returns the metrics and what ran. */
async function runOne(variant, placement, cfg, runtime, seq) {
  const p = c.PLACEMENTS[placement];
  const layer = variant === 'layer' || variant === 'nopoll' || variant === 'poll50';
  const env = { poll50: { VLS_POLL_USEC: '50' }, nopoll: { VLS_POLL_USEC: '0' } }[variant] || {};
  const where = variant === 'unix' ? path.join(runtime, `pp-${seq}.sock`) : 'tcp';
  const serverArgs =
    variant === 'api' ? ['child', 'api-server', cfg.warmup, cfg.iters] : ['child', 'server', where, cfg.warmup, cfg.iters];
  const children = [];
  try {
    const server = c.spawnNode({
      script: __filename,
      args: serverArgs,
      layer,
      cpu: p.server,
      runtime,
      env,
      name: `pingpong ${variant} server`,
    });
    children.push(server);
    const ready = await server.waitFor('READY', 30000);
    const target = variant === 'unix' ? where : String(ready.port);
    const clientArgs = ['child', variant === 'api' ? 'api-client' : 'client', target, cfg.warmup, cfg.iters];
    const client = c.spawnNode({
      script: __filename,
      args: clientArgs,
      layer,
      cpu: p.client,
      runtime,
      env,
      name: `pingpong ${variant} client`,
    });
    children.push(client);
    const timeout = 30000 + cfg.iters; // 1 ms per round trip: 20-50x what one takes
    const [cr, sr] = await Promise.all([client.waitFor('RESULT', timeout), server.waitFor('RESULT', timeout)]);
    const expected = { tcp: 'TCP', unix: 'Pipe', layer: 'SessionHandle', nopoll: 'SessionHandle', poll50: 'SessionHandle', api: 'VlsSession' }[variant];
    return {
      metrics: {
        p50: cr.p50,
        p99: cr.p99,
        p999: cr.p999,
        // µs of CPU (both processes) per round trip == ms per 1000 round trips
        cpu: (cr.cpu.total + sr.cpu.total) / cfg.iters,
      },
      cutThrough: VARIANTS[variant].layer ? cr.handle === expected && sr.handle === expected : undefined,
      transportOk: cr.handle === expected && sr.handle === expected,
      client: cr,
      server: sr,
    };
  } finally {
    await c.closeAll(children);
  }
}

async function run(opts = {}, log = () => {}) {
  const quick = !!opts.quick;
  const cfg = {
    runs: opts.runs || (quick ? 1 : 3),
    iters: opts.iters || (quick ? 3000 : 20000),
    warmup: opts.warmup || (quick ? 500 : 2000),
  };
  const placements = c.checkPlacements(opts.placements || ['same', 'unpinned', 'split']);
  const variants = c.checkVariants(opts.variants || ['tcp', 'unix', 'layer', 'nopoll', 'poll50', 'api'], Object.keys(VARIANTS));
  const tables = {};
  const metrics = [
    { id: 'p50', label: 'p50 µs', short: 'p50', decimals: 1 },
    { id: 'p99', label: 'p99 µs', short: 'p99', decimals: 1 },
    { id: 'p999', label: 'p99.9 µs', short: 'p99.9', decimals: 1 },
    { id: 'cpu', label: 'CPU ms/1000 rt', short: 'cpu', decimals: 1 },
  ];
  const ratios = [];
  if (variants.includes('tcp')) ratios.push({ metric: 'p50', vs: 'tcp' }, { metric: 'p99', vs: 'tcp' });
  if (variants.includes('unix')) ratios.push({ metric: 'p50', vs: 'unix' });
  if (variants.includes('tcp')) ratios.push({ metric: 'cpu', vs: 'tcp' });
  for (const pl of placements) {
    tables[pl] = new c.Table({
      id: `pingpong.${pl}`,
      setup: c.PLACEMENTS[pl].short,
      title: `${c.PLACEMENTS[pl].label}: 64 B round trip, ${cfg.iters} timed round trips per run, median [min-max] of ${c.plural(cfg.runs, 'run')}`,
      variants: variants.map((v) => VARIANTS[v]),
      metrics,
      ratios,
    });
  }
  const t0 = Date.now();
  let seq = 0;
  await c.interleave({ runs: cfg.runs, placements, variants }, (v, pl, round, runtime) =>
    c.measure(tables[pl], v, round, () => runOne(v, pl, cfg, runtime, seq++), log),
  );
  log('\n');
  const checks = [];
  for (const pl of placements) {
    if (pl === 'split' && variants.includes('poll50') && variants.includes('tcp')) {
      // The latency profile, where wake-ups are dear (its CPU is in the table's cpu column).
      checks.push(
        c.check(tables[pl], {
          variant: 'poll50',
          metric: 'p50',
          vs: 'tcp',
          op: '<=',
          limit: 0.2,
          label: `${pl}: poll50 p50 <= 0.2x TCP`,
        }),
      );
    }
    for (const v of ['layer'].filter((x) => variants.includes(x))) {
      const name = VARIANTS[v].short;
      if (variants.includes('tcp')) {
        checks.push(
          c.check(tables[pl], {
            variant: v,
            metric: 'p50',
            vs: 'tcp',
            op: '<=',
            limit: 0.5,
            label: `${pl}: ${name} p50 <= 0.5x TCP`,
          }),
        );
      }
      if (variants.includes('unix')) {
        checks.push(
          c.check(tables[pl], {
            variant: v,
            metric: 'p50',
            vs: 'unix',
            op: '<',
            limit: 1,
            label: `${pl}: ${name} p50 below Unix`,
          }),
        );
      }
      if (variants.includes('tcp')) {
        checks.push(
          c.check(tables[pl], {
            variant: v,
            metric: 'p99',
            vs: 'tcp',
            op: '<=',
            limit: 0.6,
            label: `${pl}: ${name} p99 <= 0.6x TCP`,
          }),
        );
      }
    }
  }
  const notes = [];
  return {
    name: 'pingpong',
    title: '1. ping-pong: 64-byte request/response between two processes over net.Socket',
    description: 'CPU = user+sys of both processes over the timed round trips; ratios: median of per-round ratios [min-max]',
    settings: { ...cfg, placements, variants },
    seconds: (Date.now() - t0) / 1000,
    tables: placements.map((pl) => tables[pl].toJSON()),
    checks,
    notes,
  };
}

module.exports = { name: 'pingpong', options, run };

if (require.main === module) {
  const [role, ...a] = process.argv.slice(2);
  if (role === 'child') {
    const [kind, x, y, z] = a;
    if (kind === 'server') netServer(x, Number(y), Number(z));
    else if (kind === 'client') netClient(x, Number(y), Number(z));
    else if (kind === 'api-server') apiServer(Number(x), Number(y));
    else if (kind === 'api-client') apiClient(x, Number(y), Number(z));
    else throw new Error(`unknown role ${kind}`);
  } else {
    c.standalone(module.exports);
  }
}
