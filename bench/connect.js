#!/usr/bin/env node
'use strict';
// 4. Connect rate: connect, write 1 byte, read the echo, close; one connection after the other.
//   node bench/connect.js [--quick] [--runs N] [--conns N] [--warmup N] [--placements same,split,unpinned]
//                         [--variants tcp,unix,layer] [--json]
// Each connection is timed from net.connect() to its echoed byte (HDR histogram, ns -> µs);
// connections/s is the whole sequence (closes included) over its wall time.
const net = require('node:net');
const path = require('node:path');
const c = require('./lib/common');

const VARIANTS = {
  tcp: { id: 'tcp', label: 'TCP (plain Node)', short: 'TCP' },
  unix: { id: 'unix', label: 'Unix socket (plain Node)', short: 'Unix' },
  layer: { id: 'layer', label: 'layer (preload, net.Socket)', short: 'layer', layer: true },
};

const options = { runs: 'int', conns: 'int', warmup: 'int', placements: 'list', variants: 'list' };

function server(where) {
  const kinds = {};
  const srv = net.createServer((sock) => {
    const k = c.handleKind(sock);
    kinds[k] = (kinds[k] || 0) + 1;
    sock.on('data', (d) => sock.write(d));
    sock.on('error', () => {});
  });
  const ready = () => c.report('READY', { port: srv.address().port, layer: c.layerActive() });
  if (where === 'tcp') srv.listen(0, '127.0.0.1', ready);
  else srv.listen(where, ready);
  c.onCommand((cmd) => {
    if (cmd === 'stats') c.report('STATS', { connections: { ...kinds } });
  });
}

function client(where, warm, n) {
  const opts = /^\d+$/.test(where) ? { host: '127.0.0.1', port: Number(where) } : { path: where };
  const one = (hist, kinds) =>
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const sock = net.connect(opts, () => sock.write('x'));
      sock.once('data', () => {
        const t1 = process.hrtime.bigint();
        hist.recordValue(Number(t1 - t0));
        const k = c.handleKind(sock);
        kinds[k] = (kinds[k] || 0) + 1;
        sock.destroy();
        resolve();
      });
      sock.on('error', reject);
    });
  (async () => {
    // The warm-up runs the very code that is measured, into a histogram and counts that are then
    // dropped. When it skipped the recording, the first measured connections took that path for
    // the first time: V8 deoptimized and recompiled mid-measurement, on the CPU being measured
    // (for the layer, whose per-connection code is larger: one-CPU p50 1.08-1.15x TCP's, p99 3x;
    // with the warm-up running this code, 0.88-1.03x and 1.0-1.5x).
    const hist = c.newHistogram();
    const warmKinds = {};
    for (let i = 0; i < warm; i++) await one(hist, warmKinds);
    hist.reset();
    const kinds = {};
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await one(hist, kinds);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    c.report('RESULT', { ...c.histSummary(hist), perSecond: n / seconds, cpu: c.cpuSince(cpu0), kinds, layer: c.layerActive() });
  })().catch((e) => {
    process.stderr.write(`client: ${e.stack}\n`);
    process.exit(1);
  });
  c.onCommand(() => {});
}

async function runOne(variant, placement, cfg, runtime, seq) {
  const p = c.PLACEMENTS[placement];
  const layer = variant === 'layer';
  const where = variant === 'unix' ? path.join(runtime, `conn-${seq}.sock`) : 'tcp';
  const children = [];
  try {
    const srv = c.spawnNode({
      script: __filename,
      args: ['child', 'server', where],
      layer,
      cpu: p.server,
      runtime,
      name: `connect ${variant} server`,
    });
    children.push(srv);
    const ready = await srv.waitFor('READY', 30000);
    const cl = c.spawnNode({
      script: __filename,
      args: ['child', 'client', variant === 'unix' ? where : ready.port, cfg.warmup, cfg.conns],
      layer,
      cpu: p.client,
      runtime,
      name: `connect ${variant} client`,
    });
    children.push(cl);
    const r = await cl.waitFor('RESULT', 60000 + cfg.conns * 10);
    srv.send('stats');
    const s = await srv.waitFor('STATS', 10000);
    const expected = { tcp: 'TCP', unix: 'Pipe', layer: 'SessionHandle' }[variant];
    const n = cfg.conns + cfg.warmup;
    const ok = r.kinds[expected] === cfg.conns && s.connections[expected] === n;
    return {
      metrics: { p50: r.p50, p99: r.p99, rate: r.perSecond },
      cutThrough: layer ? ok : undefined,
      transportOk: ok,
      client: r,
      serverConnections: s.connections,
    };
  } finally {
    await c.closeAll(children);
  }
}

async function run(opts = {}, log = () => {}) {
  const quick = !!opts.quick;
  const cfg = {
    runs: opts.runs || (quick ? 1 : 5),
    conns: opts.conns || (quick ? 300 : 1000),
    // Unmeasured connections first, until V8 has compiled both sides' per-connection code: with
    // 300, TCP's own p50 was 364 µs on one CPU, with 2,000 172 µs, with 5,000 143 µs (the
    // layer's went 394, 179, 168), so a short warm-up measured the JIT, not connection setup.
    warmup: opts.warmup || (quick ? 100 : 5000),
  };
  const placements = c.checkPlacements(opts.placements || ['same', 'unpinned', 'split']);
  const variants = c.checkVariants(opts.variants || ['tcp', 'unix', 'layer'], Object.keys(VARIANTS));
  const ratios = [];
  if (variants.includes('tcp'))
    ratios.push({ metric: 'p50', vs: 'tcp' }, { metric: 'p99', vs: 'tcp' }, { metric: 'rate', vs: 'tcp' });
  const tables = {};
  for (const pl of placements) {
    tables[pl] = new c.Table({
      id: `connect.${pl}`,
      setup: c.PLACEMENTS[pl].short,
      title: `${c.PLACEMENTS[pl].label}: ${cfg.conns} sequential connections per run after ${cfg.warmup} unmeasured, median [min-max] of ${c.plural(cfg.runs, 'run')}`,
      variants: variants.map((v) => VARIANTS[v]),
      metrics: [
        { id: 'p50', label: 'connect->echo p50 µs', short: 'p50', decimals: 1 },
        { id: 'p99', label: 'p99 µs', short: 'p99', decimals: 1 },
        { id: 'rate', label: 'conn/s', short: 'conn/s', decimals: 0 },
      ],
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
  if (variants.includes('layer') && variants.includes('tcp')) {
    for (const pl of placements) {
      checks.push(
        c.check(tables[pl], {
          variant: 'layer',
          metric: 'p50',
          vs: 'tcp',
          op: '<=',
          limit: 1,
          label: `${pl}: layer connect p50 no slower than TCP`,
        }),
      );
      checks.push(
        c.check(tables[pl], {
          variant: 'layer',
          metric: 'rate',
          vs: 'tcp',
          op: '>=',
          limit: 1,
          label: `${pl}: layer conn/s no lower than TCP`,
        }),
      );
    }
  }
  return {
    name: 'connect',
    title: '4. connect rate: connect, write 1 byte, read the echo, close; sequential',
    description:
      'latency from net.connect() to the echoed byte; conn/s over the whole sequence; ratios: median of per-round ratios [min-max]',
    settings: { ...cfg, placements, variants },
    seconds: (Date.now() - t0) / 1000,
    tables: placements.map((pl) => tables[pl].toJSON()),
    checks,
    notes: [],
  };
}

module.exports = { name: 'connect', options, run };

if (require.main === module) {
  const [role, kind, where, warm, n] = process.argv.slice(2);
  if (role === 'child') {
    if (kind === 'server') server(where);
    else if (kind === 'client') client(where, Number(warm), Number(n));
    else throw new Error(`unknown role ${kind}`);
  } else {
    c.standalone(module.exports);
  }
}
