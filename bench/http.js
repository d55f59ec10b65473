#!/usr/bin/env node
'use strict';
// 3. HTTP keep-alive: an unmodified http.createServer hello-world server under autocannon.
//   node bench/http.js [--quick] [--runs N] [--duration S] [--http-warmup S] [--connections 1,50]
//                      [--placements unpinned] [--json]
// autocannon runs in its own process (its programmatic API, in-process, no workers), started with
// the preload for the layer variant so its connections go cut-through too. Latency: every
// response time autocannon reports (float ms) goes into an HDR histogram in ns, read in µs.
// The server counts its connections by handle class: the layer rows must all be SessionHandle.
const http = require('node:http');
const c = require('./lib/common');

const VARIANTS = {
  tcp: { id: 'tcp', label: 'plain Node (TCP)', short: 'TCP' },
  layer: { id: 'layer', label: 'layer (preload both ends)', short: 'layer', layer: true },
};

const options = { runs: 'int', duration: 'num', 'http-warmup': 'num', connections: 'list', placements: 'list' };

function server() {
  const kinds = {};
  let cpu0 = process.cpuUsage();
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('hello world\n');
  });
  // Instrumentation of the bench, outside the application's handler.
  srv.on('connection', (sock) => {
    const k = c.handleKind(sock);
    kinds[k] = (kinds[k] || 0) + 1;
  });
  srv.listen(0, '127.0.0.1', () => c.report('READY', { port: srv.address().port, layer: c.layerActive() }));
  c.onCommand((cmd) => {
    if (cmd === 'mark') {
      for (const k of Object.keys(kinds)) delete kinds[k];
      cpu0 = process.cpuUsage();
      c.report('MARKED', {});
    } else if (cmd === 'stats') {
      c.report('STATS', { connections: { ...kinds }, cpu: c.cpuSince(cpu0) });
    }
  });
}

function load(port, connections, duration, warmup) {
  const autocannon = require('autocannon');
  const url = `http://127.0.0.1:${port}/`;
  c.onCommand(async (cmd) => {
    try {
      if (cmd === 'warmup') {
        await autocannon({ url, connections, duration: warmup });
        c.report('WARM', {});
      } else if (cmd === 'run') {
        const hist = c.newHistogram();
        const cpu0 = process.cpuUsage();
        const inst = autocannon({ url, connections, duration });
        inst.on('response', (client, status, bytes, ms) => hist.recordValue(Math.max(1, Math.round(ms * 1e6))));
        const r = await inst;
        c.report('RESULT', {
          requests: r.requests.total,
          seconds: r.duration,
          rps: r.requests.total / r.duration,
          errors: r.errors,
          timeouts: r.timeouts,
          non2xx: r.non2xx,
          latency: c.histSummary(hist),
          cpu: c.cpuSince(cpu0),
          layer: c.layerActive(),
        });
      }
    } catch (e) {
      process.stderr.write(`load: ${e.stack}\n`);
      process.exit(1);
    }
  });
  c.report('READY', {});
}

async function runOne(variant, placement, conns, cfg, runtime) {
  const p = c.PLACEMENTS[placement];
  const layer = variant === 'layer';
  const children = [];
  try {
    const srv = c.spawnNode({
      script: __filename,
      args: ['child', 'server'],
      layer,
      cpu: p.server,
      runtime,
      name: `http ${variant} server`,
    });
    children.push(srv);
    const { port } = await srv.waitFor('READY', 30000);
    const ld = c.spawnNode({
      script: __filename,
      args: ['child', 'load', port, conns, cfg.duration, cfg.warmup],
      layer,
      cpu: p.client,
      runtime,
      name: `http ${variant} load`,
    });
    children.push(ld);
    await ld.waitFor('READY', 30000);
    ld.send('warmup');
    await ld.waitFor('WARM', 30000 + cfg.warmup * 2000);
    srv.send('mark');
    await srv.waitFor('MARKED', 10000);
    ld.send('run');
    const r = await ld.waitFor('RESULT', 30000 + cfg.duration * 2000);
    srv.send('stats');
    const s = await srv.waitFor('STATS', 10000);
    const kinds = s.connections;
    const total = Object.values(kinds).reduce((a, b) => a + b, 0);
    const expected = layer ? 'SessionHandle' : 'TCP';
    return {
      metrics: {
        rps: r.rps,
        p50: r.latency.p50,
        p99: r.latency.p99,
        cpu: (r.cpu.total + s.cpu.total) / r.requests, // µs per request, both processes
      },
      cutThrough: layer ? total > 0 && kinds.SessionHandle === total : undefined,
      transportOk: total > 0 && kinds[expected] === total,
      serverConnections: kinds,
      load: r,
      serverCpu: s.cpu,
    };
  } finally {
    await c.closeAll(children);
  }
}

async function run(opts = {}, log = () => {}) {
  const quick = !!opts.quick;
  const cfg = {
    runs: opts.runs || (quick ? 1 : 5),
    duration: opts.duration || (quick ? 1 : 3),
    warmup: opts['http-warmup'] || (quick ? 0.3 : 1),
  };
  const connections = (opts.connections || ['1', '50']).map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 1)
      throw Object.assign(new TypeError(`--connections: bad count ${JSON.stringify(x)}`), { code: 'ERR_INVALID_ARG_VALUE' });
    return n;
  });
  const placements = c.checkPlacements(opts.placements || ['unpinned']);
  const variants = ['tcp', 'layer'];
  const tables = {};
  for (const pl of placements) {
    for (const n of connections) {
      tables[`${pl}.${n}`] = new c.Table({
        id: `http.${pl}.c${n}`,
        setup: `${n} connection${n > 1 ? 's' : ''}, ${c.PLACEMENTS[pl].short}`,
        title: `${n} connection${n > 1 ? 's' : ''}, ${c.PLACEMENTS[pl].label}: ${cfg.duration} s per run after ${cfg.warmup} s warm-up, median [min-max] of ${c.plural(cfg.runs, 'run')}`,
        variants: variants.map((v) => VARIANTS[v]),
        metrics: [
          { id: 'rps', label: 'req/s', short: 'req/s', decimals: 0 },
          { id: 'p50', label: 'latency p50 µs', short: 'p50', decimals: 0 },
          { id: 'p99', label: 'latency p99 µs', short: 'p99', decimals: 0 },
          { id: 'cpu', label: 'CPU µs/req', short: 'cpu', decimals: 1 },
        ],
        ratios: [
          { metric: 'rps', vs: 'tcp' },
          { metric: 'p50', vs: 'tcp' },
          { metric: 'p99', vs: 'tcp' },
        ],
      });
    }
  }
  const runtime = c.makeRuntime();
  const t0 = Date.now();
  try {
    for (let round = 0; round < cfg.runs; round++) {
      for (const pl of placements) {
        for (const n of connections) {
          for (const v of c.rotate(variants, round)) {
            await c.measure(tables[`${pl}.${n}`], v, round, () => runOne(v, pl, n, cfg, runtime), log);
          }
        }
      }
    }
  } finally {
    require('node:fs').rmSync(runtime, { recursive: true, force: true });
  }
  log('\n');
  const checks = [];
  for (const key of Object.keys(tables)) {
    const [pl, n] = key.split('.');
    checks.push(
      c.check(tables[key], {
        variant: 'layer',
        metric: 'rps',
        vs: 'tcp',
        op: '>=',
        limit: 1.4,
        label: `${pl}, ${n} conn: layer req/s >= 1.4x TCP`,
      }),
    );
  }
  const notes = [];
  for (const key of Object.keys(tables)) {
    const t = tables[key].toJSON();
    const ct = t.cutThrough.layer;
    if (ct) notes.push(`${t.id}: the server saw only SessionHandle connections in ${ct.cutThrough} of ${ct.runs} layer runs`);
  }
  return {
    name: 'http',
    title: '3. HTTP keep-alive: unmodified http.createServer hello world, autocannon in its own process',
    description: 'CPU = user+sys of server and autocannon per request; ratios: median of per-round ratios [min-max]',
    settings: { ...cfg, connections, placements },
    seconds: (Date.now() - t0) / 1000,
    tables: Object.values(tables).map((t) => t.toJSON()),
    checks,
    notes,
  };
}

module.exports = { name: 'http', options, run };

if (require.main === module) {
  const [role, kind, port, conns, duration, warmup] = process.argv.slice(2);
  if (role === 'child') {
    if (kind === 'server') server();
    else if (kind === 'load') load(Number(port), Number(conns), Number(duration), Number(warmup));
    else throw new Error(`unknown role ${kind}`);
  } else {
    c.standalone(module.exports);
  }
}
