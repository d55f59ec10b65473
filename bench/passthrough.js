#!/usr/bin/env node
'use strict';
// 5. Passthrough overhead: what the layer costs on connections it hands to the kernel.
//   node bench/passthrough.js [--quick] [--runs N] [--bursts N] [--conns N] [--iters N]
//                             [--placements same,split,unpinned] [--json]
// A plain-Node echo server (never preloaded, so nothing is published) and two clients of it, one
// on plain Node and one through the preload, all up at once. The clients take turns in bursts,
// the order alternating (A B, B A, ...): each burst is N sequential connect + 1-byte echo + close,
// then a 64-byte ping-pong of N round trips over the client's own connection. Each pair of bursts
// gives one ratio; the figure is the median of all of them. The target is 2%, and this VM's
// whole-run figures drift by far more than that from one run to the next (A B A B runs of the
// same clients gave 0.56-1.53x for the ping-pong p50): back-to-back bursts of processes that stay
// up expose both clients to the same drift. The preloaded client must report kernel TCP sockets
// with the layer active.
const fs = require('node:fs');
const net = require('node:net');
const c = require('./lib/common');

const MSG = 64;

const VARIANTS = {
  plain: { id: 'plain', label: 'plain Node client', short: 'plain' },
  layer: { id: 'layer', label: 'preloaded client (passthrough)', short: 'layer' },
};

const options = { runs: 'int', bursts: 'int', conns: 'int', iters: 'int', placements: 'list' };

/** The echo server: plain Node in both variants, the peer the layer cannot reach. */
function server() {
  const srv = net.createServer((sock) => {
    sock.setNoDelay(true);
    sock.on('data', (d) => sock.write(d));
    sock.on('error', () => {});
  });
  srv.listen(0, '127.0.0.1', () => c.report('READY', { port: srv.address().port, layer: c.layerActive() }));
  c.onCommand(() => {});
}

/**
 * A client that runs bursts on command: `conn N` (N sequential connect + 1-byte echo + close, the
 * connect benchmark's client) and `pp N` (N 64-byte round trips over one connection kept open, the
 * ping-pong benchmark's client). Each answers BURST with its figures and the handle kinds it had.
 */
function client(port) {
  const opts = { host: '127.0.0.1', port: Number(port) };
  const one = (hist, kinds) =>
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const sock = net.connect(opts, () => sock.write('x'));
      sock.once('data', () => {
        hist.recordValue(Number(process.hrtime.bigint() - t0));
        const k = c.handleKind(sock);
        kinds[k] = (kinds[k] || 0) + 1;
        sock.destroy();
        resolve();
      });
      sock.on('error', reject);
    });
  const fail = (e) => {
    process.stderr.write(`passthrough client: ${e.stack}\n`);
    process.exit(1);
  };
  const msg = Buffer.alloc(MSG, 7);
  const pps = net.connect({ ...opts, noDelay: true });
  let pp = null; // the burst in progress
  pps.on('data', (d) => pp && pp.onBytes(d.length));
  pps.on('error', fail);
  pps.on('connect', () => c.report('READY', { layer: c.layerActive() }));
  c.onCommand((line) => {
    const [cmd, arg] = line.split(' ');
    const n = Number(arg);
    if (cmd === 'conn') {
      (async () => {
        const hist = c.newHistogram();
        const kinds = {};
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < n; i++) await one(hist, kinds);
        const us = Number(process.hrtime.bigint() - t0) / 1e3;
        c.report('BURST', { mean: us / n, p50: c.histSummary(hist).p50, kinds, layer: c.layerActive() });
      })().catch(fail);
    } else if (cmd === 'pp') {
      pp = c.pingPonger({
        size: MSG,
        warm: 0,
        iters: n,
        send: () => pps.write(msg),
        done: (r) => {
          pp = null;
          c.report('BURST', { ...r, handle: c.handleKind(pps), layer: c.layerActive() });
        },
      });
      pp.start();
    }
  });
}

/** One run: the server and both clients up, warmed up, then `bursts` turns each. */
async function runOne(placement, cfg, runtime, tables, run, log) {
  const p = c.PLACEMENTS[placement];
  const children = [];
  try {
    const srv = c.spawnNode({ script: __filename, args: ['child', 'server'], cpu: p.server, runtime, name: 'passthrough server' });
    children.push(srv);
    const { port } = await srv.waitFor('READY', 30000);
    const clients = {};
    for (const v of Object.keys(VARIANTS)) {
      const cl = c.spawnNode({
        script: __filename,
        args: ['child', 'client', port],
        layer: v === 'layer',
        cpu: p.client,
        runtime,
        name: `passthrough ${v} client`,
      });
      children.push(cl);
      await cl.waitFor('READY', 30000);
      clients[v] = cl;
    }
    const burst = async (v, cmd, n) => {
      clients[v].send(`${cmd} ${n}`);
      return clients[v].waitFor('BURST', 60000 + n * 10);
    };
    // Unmeasured: past V8's warm-up of both clients (as the connect and ping-pong benchmarks).
    for (const v of Object.keys(VARIANTS)) {
      await burst(v, 'conn', cfg.warmup);
      await burst(v, 'pp', cfg.ppWarmup);
    }
    for (let b = 0; b < cfg.bursts; b++) {
      const round = run * cfg.bursts + b;
      for (const v of c.rotate(Object.keys(VARIANTS), b)) {
        const conn = await burst(v, 'conn', cfg.conns);
        const pp = await burst(v, 'pp', cfg.iters);
        // Passthrough really happened: kernel TCP sockets, in a process where the layer is active.
        const layer = v === 'layer';
        const ok = conn.kinds.TCP === cfg.conns && pp.handle === 'TCP' && conn.layer === layer && pp.layer === layer;
        tables[placement].add(v, round, { connMean: conn.mean, connP50: conn.p50, ppP50: pp.p50, ppP99: pp.p99 }, {
          transportOk: ok,
          connect: conn,
          pingpong: pp,
        });
        log('.');
      }
    }
  } finally {
    await c.closeAll(children);
  }
}

async function run(opts = {}, log = () => {}) {
  const quick = !!opts.quick;
  const cfg = {
    runs: opts.runs || (quick ? 1 : 3),
    bursts: opts.bursts || (quick ? 4 : 30),
    conns: opts.conns || (quick ? 50 : 100),
    warmup: quick ? 100 : 5000, // as the connect benchmark: past V8's warm-up of both clients
    iters: opts.iters || (quick ? 500 : 1000),
    ppWarmup: quick ? 500 : 2000,
  };
  const placements = c.checkPlacements(opts.placements || ['same']);
  const variants = ['plain', 'layer'];
  const tables = {};
  for (const pl of placements) {
    tables[pl] = new c.Table({
      id: `passthrough.${pl}`,
      setup: c.PLACEMENTS[pl].short,
      title: `${c.PLACEMENTS[pl].label}: both clients up at once, taking turns in bursts of ${cfg.conns} connect+echo+close then ${cfg.iters} ping-pong round trips (after ${cfg.warmup} and ${cfg.ppWarmup} unmeasured), median [min-max] of ${cfg.runs * cfg.bursts} bursts each (${c.plural(cfg.runs, 'run')} of ${cfg.bursts})`,
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
  const runtime = c.makeRuntime();
  try {
    for (let run = 0; run < cfg.runs; run++)
      for (const pl of placements) {
        try {
          await runOne(pl, cfg, runtime, tables, run, log);
        } catch (e) {
          // A child died, hung or misbehaved: the rest of this run's bursts are missing, reported.
          tables[pl].fail('plain', run * cfg.bursts, e);
          log('x');
        }
      }
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
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
    description: 'ratios: median of the ratios of back-to-back bursts [min-max]',
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

if (require.main === module) {
  const [role, kind, port] = process.argv.slice(2);
  if (role === 'child') {
    if (kind === 'server') server();
    else if (kind === 'client') client(port);
    else throw new Error(`unknown role ${kind}`);
  } else {
    c.standalone(module.exports);
  }
}
