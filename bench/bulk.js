#!/usr/bin/env node
'use strict';
// 2. Bulk: one-direction stream of 64 KiB writes between two processes over net.Socket.
//   node bench/bulk.js [--quick] [--runs N] [--mib N] [--warmup-mib N] [--placements same,split,unpinned]
//                      [--variants tcp,unix,layer] [--json]
// The sender writes as fast as backpressure lets it (write() until false, then 'drain'). The first
// --warmup-mib MiB of the stream are not measured (as iperf3 --omit): the receiver times the next
// --mib MiB, from the first byte past the warm-up to the last, and reports GB/s (10^9 bytes per
// second). CPU time of both processes over the measured part is reported per GB.
const net = require('node:net');
const path = require('node:path');
const c = require('./lib/common');

const CHUNK = 64 * 1024;

const VARIANTS = {
  tcp: { id: 'tcp', label: 'TCP (plain Node)', short: 'TCP' },
  unix: { id: 'unix', label: 'Unix socket (plain Node)', short: 'Unix' },
  layer: { id: 'layer', label: 'layer (preload, net.Socket)', short: 'layer', layer: true },
};

const options = { runs: 'int', mib: 'int', 'warmup-mib': 'int', placements: 'list', variants: 'list' };

function receiver(where, warm, total) {
  const srv = net.createServer((sock) => {
    let seen = 0; // bytes of the whole stream, warm-up included
    let bytes = 0; // measured bytes: from the first chunk that ends past the warm-up
    let t0 = 0n;
    let cpu0;
    sock.on('data', (d) => {
      seen += d.length;
      if (seen <= warm) return;
      if (bytes === 0) {
        t0 = process.hrtime.bigint();
        cpu0 = process.cpuUsage();
      }
      bytes += d.length;
      if (bytes >= total && bytes - d.length < total) {
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        c.report('RESULT', { bytes, seconds, gbps: bytes / seconds / 1e9, cpu: c.cpuSince(cpu0), handle: c.handleKind(sock) });
      }
    });
    sock.on('error', () => {});
  });
  const ready = () => c.report('READY', { port: srv.address().port, layer: c.layerActive() });
  if (where === 'tcp') srv.listen(0, '127.0.0.1', ready);
  else srv.listen(where, ready);
  c.onCommand(() => {});
}

function sender(where, warm, total) {
  const opts = /^\d+$/.test(where) ? { host: '127.0.0.1', port: Number(where) } : { path: where };
  const sock = net.connect(opts);
  const buf = Buffer.alloc(CHUNK, 0x5a);
  const end = warm + total;
  let sent = 0;
  let cpu0 = null; // CPU is counted from the end of the warm-up
  const pump = () => {
    while (sent < end) {
      if (cpu0 === null && sent >= warm) cpu0 = process.cpuUsage();
      sent += CHUNK;
      if (!sock.write(buf)) {
        sock.once('drain', pump);
        return;
      }
    }
    sock.write('', () => c.report('RESULT', { sent, cpu: c.cpuSince(cpu0), handle: c.handleKind(sock), layer: c.layerActive() }));
  };
  sock.on('connect', pump);
  sock.on('error', (e) => {
    process.stderr.write(`sender: ${e.stack}\n`);
    process.exit(1);
  });
  c.onCommand(() => {});
}

async function runOne(variant, placement, warm, total, runtime, seq) {
  const p = c.PLACEMENTS[placement];
  const layer = variant === 'layer';
  const where = variant === 'unix' ? path.join(runtime, `bulk-${seq}.sock`) : 'tcp';
  const children = [];
  try {
    const server = c.spawnNode({
      script: __filename,
      args: ['child', 'receiver', where, warm, total],
      layer,
      cpu: p.server,
      runtime,
      name: `bulk ${variant} receiver`,
    });
    children.push(server);
    const ready = await server.waitFor('READY', 30000);
    const client = c.spawnNode({
      script: __filename,
      args: ['child', 'sender', variant === 'unix' ? where : ready.port, warm, total],
      layer,
      cpu: p.client,
      runtime,
      name: `bulk ${variant} sender`,
    });
    children.push(client);
    const timeout = 60000 + (warm + total) / 1e5; // 10 ms per MB on top of a minute: nothing here is that slow
    const [sr, cr] = await Promise.all([server.waitFor('RESULT', timeout), client.waitFor('RESULT', timeout)]);
    const expected = { tcp: 'TCP', unix: 'Pipe', layer: 'SessionHandle' }[variant];
    return {
      metrics: { gbps: sr.gbps, cpu: ((sr.cpu.total + cr.cpu.total) / 1e3 / sr.bytes) * 1e9 },
      cutThrough: layer ? sr.handle === expected && cr.handle === expected : undefined,
      transportOk: sr.handle === expected && cr.handle === expected,
      receiver: sr,
      sender: cr,
    };
  } finally {
    await c.closeAll(children);
  }
}

async function run(opts = {}, log = () => {}) {
  const quick = !!opts.quick;
  const runs = opts.runs || (quick ? 1 : 5);
  const mib = opts.mib || (quick ? 128 : 1024);
  const total = mib * 1024 * 1024;
  // Unmeasured first part of each stream: V8 compiles both processes' per-chunk code on helper
  // threads that share the CPU. Measured with perf on one CPU, TurboFan took 20-40% of the CPU for
  // the first ~300 ms of a stream, whatever the transport; that is a fixed time, so it weighed on
  // the faster variant's 1 GiB more (the layer's GB/s rose from 1.3 to 3.8 over its first GiB,
  // TCP's from 0.9 to 1.8 over its first 384 MiB).
  const warmup = opts['warmup-mib'] || (quick ? 32 : 1024);
  const warm = warmup * 1024 * 1024;
  const placements = c.checkPlacements(opts.placements || ['same', 'split']);
  const variants = c.checkVariants(opts.variants || ['tcp', 'unix', 'layer'], Object.keys(VARIANTS));
  const ratios = [];
  if (variants.includes('tcp')) ratios.push({ metric: 'gbps', vs: 'tcp' });
  if (variants.includes('unix')) ratios.push({ metric: 'gbps', vs: 'unix' });
  if (variants.includes('tcp')) ratios.push({ metric: 'cpu', vs: 'tcp' });
  const tables = {};
  for (const pl of placements) {
    tables[pl] = new c.Table({
      id: `bulk.${pl}`,
      setup: c.PLACEMENTS[pl].short,
      title: `${c.PLACEMENTS[pl].label}: ${mib} MiB in 64 KiB writes after ${warmup} MiB unmeasured, median [min-max] of ${c.plural(runs, 'run')}`,
      variants: variants.map((v) => VARIANTS[v]),
      metrics: [
        { id: 'gbps', label: 'GB/s', short: 'GB/s', decimals: 2 },
        { id: 'cpu', label: 'CPU ms/GB', short: 'cpu', decimals: 0 },
      ],
      ratios,
    });
  }
  const t0 = Date.now();
  let seq = 0;
  await c.interleave({ runs, placements, variants }, (v, pl, round, runtime) =>
    c.measure(tables[pl], v, round, () => runOne(v, pl, warm, total, runtime, seq++), log),
  );
  log('\n');
  const checks = [];
  if (variants.includes('layer')) {
    for (const pl of placements) {
      if (variants.includes('tcp'))
        checks.push(
          c.check(tables[pl], {
            variant: 'layer',
            metric: 'gbps',
            vs: 'tcp',
            op: '>=',
            limit: 2,
            label: `${pl}: layer GB/s >= 2x TCP`,
          }),
        );
      if (variants.includes('unix'))
        checks.push(
          c.check(tables[pl], {
            variant: 'layer',
            metric: 'gbps',
            vs: 'unix',
            op: '>=',
            limit: 1.3,
            label: `${pl}: layer GB/s >= 1.3x Unix`,
          }),
        );
    }
  }
  return {
    name: 'bulk',
    title: '2. bulk: one-direction stream, 64 KiB writes, GB/s at the receiver',
    description: 'CPU = user+sys of both processes per GB moved; ratios: median of per-round ratios [min-max]',
    settings: { runs, mib, warmup, placements, variants },
    seconds: (Date.now() - t0) / 1000,
    tables: placements.map((pl) => tables[pl].toJSON()),
    checks,
    notes: [],
  };
}

module.exports = { name: 'bulk', options, run };

if (require.main === module) {
  const [role, kind, where, warm, total] = process.argv.slice(2);
  if (role === 'child') {
    if (kind === 'receiver') receiver(where, Number(warm), Number(total));
    else if (kind === 'sender') sender(where, Number(warm), Number(total));
    else throw new Error(`unknown role ${kind}`);
  } else {
    c.standalone(module.exports);
  }
}
