#!/usr/bin/env node
'use strict';
// 5. Passthrough overhead: what the layer costs on connections it hands to the kernel.
//   node bench/passthrough.js [--quick] [--runs N] [--conns N] [--iters N]
//                             [--placements same,split,unpinned] [--json]
// A plain-Node echo server (never preloaded, so nothing is published); the same client run on
// plain Node and through the preload, alternating A B A B: N sequential connect + 1-byte echo +
// close (the connect benchmark's client), then a 64-byte ping-pong (the ping-pong benchmark's
// client). The preloaded client must report a kernel TCP handle with the layer active.
const path = require('node:path');
const c = require('./lib/common');

const CONNECT = path.join(__dirname, 'connect.js');
const PINGPONG = path.join(__dirname, 'pingpong.js');

const VARIANTS = {
  plain: { id: 'plain', label: 'plain Node client', short: 'plain' },
  layer: { id: 'layer', label: 'preloaded client (passthrough)', short: 'layer' },
};

const options = { runs: 'int', conns: 'int', iters: 'int', placements: 'list' };

async function runOne(variant, placement, cfg, runtime) {
  const p = c.PLACEMENTS[placement];
  const layer = variant === 'layer';
  const children = [];
  try {
    // The server is plain Node in both variants: the peer the layer cannot reach.
    const srv = c.spawnNode({
      script: CONNECT,
      args: ['child', 'server', 'tcp'],
      cpu: p.server,
      runtime,
      name: 'passthrough server',
    });
    children.push(srv);
    const { port } = await srv.waitFor('READY', 30000);
    const cc = c.spawnNode({
      script: CONNECT,
      args: ['child', 'client', port, cfg.warmup, cfg.conns],
      layer,
      cpu: p.client,
      runtime,
      name: `passthrough ${variant} connect`,
    });
    children.push(cc);
    const conn = await cc.waitFor('RESULT', 60000 + cfg.conns * 10);
    await cc.close();
    const pc = c.spawnNode({
      script: PINGPONG,
      args: ['child', 'client', String(port), cfg.ppWarmup, cfg.iters],
      layer,
      cpu: p.client,
      runtime,
      name: `passthrough ${variant} ping-pong`,
    });
    children.push(pc);
    const pp = await pc.waitFor('RESULT', 60000 + cfg.iters * 2);
    // Passthrough really happened: kernel TCP sockets, in a process where the layer is active.
    const ok = conn.kinds.TCP === cfg.conns && pp.handle === 'TCP' && conn.layer === layer && pp.layer === layer;
    return {
      metrics: { connMean: 1e6 / conn.perSecond, connP50: conn.p50, ppP50: pp.p50, ppP99: pp.p99 },
      transportOk: ok,
      connect: conn,
      pingpong: pp,
    };
  } finally {
    await c.closeAll(children);
  }
}

async function run(opts = {}, log = () => {}) {
  const quick = !!opts.quick;
  const cfg = {
    runs: opts.runs || (quick ? 1 : 6),
    conns: opts.conns || (quick ? 300 : 2000),
    warmup: quick ? 100 : 5000, // as the connect benchmark: past V8's warm-up of both clients
    iters: opts.iters || (quick ? 3000 : 20000),
    ppWarmup: quick ? 500 : 2000,
  };
  const placements = c.checkPlacements(opts.placements || ['same']);
  const variants = ['plain', 'layer'];
  const tables = {};
  for (const pl of placements) {
    tables[pl] = new c.Table({
      id: `passthrough.${pl}`,
      setup: c.PLACEMENTS[pl].short,
      title: `${c.PLACEMENTS[pl].label}: ${cfg.conns} connect+echo+close (after ${cfg.warmup} unmeasured), then ${cfg.iters} ping-pong round trips, median [min-max] of ${c.plural(cfg.runs, 'run')}`,
      variants: variants.map((v) => VARIANTS[v]),
      metrics: [
        { id: 'connMean', label: 'connect+echo+close µs (mean)', short: 'conn', decimals: 1 },
        { id: 'connP50', label: 'connect->echo p50 µs', short: 'conn p50', decimals: 1 },
        { id: 'ppP50', label: 'ping-pong p50 µs', short: 'pp p50', decimals: 1 },
        { id: 'ppP99', label: 'ping-pong p99 µs', short: 'pp p99', decimals: 1 },
      ],
      ratios: [
        { metric: 'connMean', vs: 'plain' },
        { metric: 'connP50', vs: 'plain' },
        { metric: 'ppP50', vs: 'plain' },
      ],
    });
  }
  const t0 = Date.now();
  await c.interleave({ runs: cfg.runs, placements, variants }, (v, pl, round, runtime) =>
    c.measure(tables[pl], v, round, () => runOne(v, pl, cfg, runtime), log),
  );
  log('\n');
  const checks = [];
  for (const pl of placements) {
    checks.push(
      c.check(tables[pl], {
        variant: 'layer',
        metric: 'connMean',
        vs: 'plain',
        op: '<=',
        limit: 1.02,
        label: `${pl}: connect+echo+close <= 1.02x plain`,
      }),
    );
    checks.push(
      c.check(tables[pl], {
        variant: 'layer',
        metric: 'ppP50',
        vs: 'plain',
        op: '<=',
        limit: 1.02,
        label: `${pl}: ping-pong p50 <= 1.02x plain`,
      }),
    );
  }
  const tablesJson = placements.map((pl) => tables[pl].toJSON());
  const bad = tablesJson.flatMap((t) => t.runs.filter((r) => !r.transportOk).map((r) => `${t.id} ${r.variant} round ${r.round}`));
  return {
    name: 'passthrough',
    title: '5. passthrough overhead: a preloaded client to a plain (not intercepted) server vs a plain client',
    description: 'ratios: median of per-round ratios [min-max]',
    settings: { ...cfg, placements },
    seconds: (Date.now() - t0) / 1000,
    tables: tablesJson,
    checks,
    notes: bad.length
      ? [`runs that did not pass through as expected: ${bad.join(', ')}`]
      : ['every preloaded client had the layer active and kernel TCP sockets'],
  };
}

module.exports = { name: 'passthrough', options, run };

if (require.main === module) c.standalone(module.exports);
