#!/usr/bin/env node
'use strict';
// 6. Idle sessions: what 10,000 idle connections between two processes cost, and whether they slow
// down the one that is busy.
//   node bench/idle.js [--quick] [--runs N] [--sessions N] [--iters N] [--fifo BYTES]
//                      [--placements same] [--json]
// Per run (layer: both processes preloaded; tcp: plain Node), driven step by step:
//   ping-pong on one connection (0 idle) -> memory of both processes -> open N idle connections
//   -> memory again -> ping-pong (N idle) -> close the idle ones -> ping-pong (0 idle) again
// Memory per idle connection = growth / N of VmRSS (both processes), of the JS heap after a full GC
// (both), of RssShmem (shared pages touched), and for the layer of the fifo segments in use (worker
// stats segmentUsed, both processes: the connector's holds the pairs), which should be the two
// fifos plus at most 1 KiB of bookkeeping; and the layer's JS heap per connection beyond TCP's
// (its own JS bookkeeping: handle, session), checked against the same 1 KiB.
// The busy connection's cost is its round trip p50 and the CPU of both processes per round trip,
// with N idle over the mean of the two 0-idle measurements: it must not grow.
const net = require('node:net');
const path = require('node:path');
const c = require('./lib/common');

const MSG = 64;

const VARIANTS = {
  tcp: { id: 'tcp', label: 'TCP (plain Node)', short: 'TCP' },
  layer: { id: 'layer', label: 'layer (preload both ends)', short: 'layer', layer: true },
};

const options = { runs: 'int', sessions: 'int', iters: 'int', fifo: 'int', segment: 'int', placements: 'list' };

function memSnapshot() {
  if (global.gc) {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  let segment;
  if (c.layerActive()) {
    const w = require(path.join(c.REPO, 'dist', 'src')).currentWorker();
    const st = w && w.stats();
    if (st && typeof st === 'object')
      segment = { used: st.segmentUsed, size: st.segmentBytes, sessions: st.sessions, peers: st.peers };
  }
  const cpu = process.cpuUsage();
  return {
    ...c.procMemory(),
    heapUsed: m.heapUsed,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    segment,
    cpu: cpu.user + cpu.system,
  };
}

function server() {
  const kinds = {};
  const srv = net.createServer((sock) => {
    const k = c.handleKind(sock);
    kinds[k] = (kinds[k] || 0) + 1;
    sock.setNoDelay(true);
    sock.on('data', (d) => sock.write(d));
    sock.on('error', () => {});
    sock.on('close', () => kinds[k]--);
  });
  srv.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () =>
    c.report('READY', { port: srv.address().port, layer: c.layerActive() }),
  );
  c.onCommand((cmd) => {
    if (cmd === 'mem') c.report('MEM', { ...memSnapshot(), kinds: { ...kinds } });
    else if (cmd === 'cpu') {
      const u = process.cpuUsage();
      c.report('CPU', { cpu: u.user + u.system });
    }
  });
}

function client(port) {
  let ping;
  const idle = [];
  const connect = () =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s));
      s.once('error', reject);
    });
  const pingPong = (warm, iters) =>
    new Promise((resolve) => {
      const msg = Buffer.alloc(MSG, 7);
      const pp = c.pingPonger({
        size: MSG,
        warm,
        iters,
        send: () => ping.write(msg),
        done: (r) => {
          ping.off('data', onData);
          resolve({ ...r, handle: c.handleKind(ping) });
        },
      });
      const onData = (d) => pp.onBytes(d.length);
      ping.on('data', onData);
      pp.start();
    });
  const openIdle = async (n, parallel) => {
    const t0 = process.hrtime.bigint();
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next++;
        const s = await connect();
        s.on('error', () => {});
        idle.push(s);
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
    const kinds = {};
    for (const s of idle) {
      const k = c.handleKind(s);
      kinds[k] = (kinds[k] || 0) + 1;
    }
    return { n: idle.length, seconds: Number(process.hrtime.bigint() - t0) / 1e9, kinds };
  };
  c.onCommand(async (line) => {
    const [cmd, a, b] = line.split(' ');
    try {
      if (cmd === 'pp') {
        if (!ping) ping = await connect();
        c.report('PP', await pingPong(Number(a), Number(b)));
      } else if (cmd === 'open') {
        c.report('OPENED', await openIdle(Number(a), 16));
      } else if (cmd === 'closeidle') {
        const closed = idle.map((s) => new Promise((r) => s.once('close', r)));
        for (const s of idle) s.destroy();
        await Promise.all(closed);
        idle.length = 0;
        c.report('CLOSED', {});
      } else if (cmd === 'mem') {
        c.report('MEM', memSnapshot());
      }
    } catch (e) {
      process.stderr.write(`idle client: ${e.stack}\n`);
      process.exit(1);
    }
  });
  c.report('READY', { layer: c.layerActive() });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function runOne(variant, placement, cfg, runtime) {
  const p = c.PLACEMENTS[placement];
  const layer = variant === 'layer';
  const env = {};
  if (layer) {
    if (cfg.segmentSize !== undefined) env.VLS_SEGMENT_SIZE = String(cfg.segmentSize);
    if (cfg.fifo) env.VLS_FIFO_SIZE = String(cfg.fifo);
  }
  const children = [];
  try {
    const srv = c.spawnNode({
      script: __filename,
      args: ['child', 'server'],
      layer,
      cpu: p.server,
      runtime,
      env,
      nodeArgs: ['--expose-gc'],
      name: `idle ${variant} server`,
    });
    children.push(srv);
    const { port } = await srv.waitFor('READY', 30000);
    const cl = c.spawnNode({
      script: __filename,
      args: ['child', 'client', port],
      layer,
      cpu: p.client,
      runtime,
      env,
      nodeArgs: ['--expose-gc'],
      name: `idle ${variant} client`,
    });
    children.push(cl);
    await cl.waitFor('READY', 30000);
    const ppTimeout = 60000 + cfg.iters * 2;
    const pingPong = async () => {
      srv.send('cpu');
      const s0 = await srv.waitFor('CPU', 10000);
      cl.send(`pp ${cfg.warmup} ${cfg.iters}`);
      const r = await cl.waitFor('PP', ppTimeout);
      srv.send('cpu');
      const s1 = await srv.waitFor('CPU', 10000);
      return { ...r, cpuPerRt: (r.cpu.total + s1.cpu - s0.cpu) / cfg.iters };
    };
    const mem = async () => {
      srv.send('mem');
      cl.send('mem');
      return { server: await srv.waitFor('MEM', 30000), client: await cl.waitFor('MEM', 30000) };
    };
    const pp0 = await pingPong();
    const mem0 = await mem();
    cl.send(`open ${cfg.sessions}`);
    const opened = await cl.waitFor('OPENED', 120000 + cfg.sessions * 5);
    await sleep(500);
    const mem1 = await mem();
    const ppN = await pingPong();
    cl.send('closeidle');
    await cl.waitFor('CLOSED', 60000 + cfg.sessions * 2);
    await sleep(200);
    const pp0b = await pingPong();
    const n = cfg.sessions;
    const per = (f) => (f(mem1.server) - f(mem0.server) + f(mem1.client) - f(mem0.client)) / n;
    const expected = layer ? 'SessionHandle' : 'TCP';
    const idleOk = opened.kinds[expected] === n && (mem1.server.kinds[expected] || 0) >= n + 1;
    const pingOk = pp0.handle === expected && ppN.handle === expected;
    // The pairs live in the connector's segment; both processes are summed, so the figure does not
    // depend on which side makes them.
    const segUsed = (m) => m.server.segment.used + m.client.segment.used;
    const segPer =
      layer && mem1.server.segment && mem0.server.segment && mem1.client.segment && mem0.client.segment
        ? (segUsed(mem1) - segUsed(mem0)) / n
        : undefined;
    return {
      metrics: {
        rss: per((m) => m.rss) / 1024,
        heap: per((m) => m.heapUsed) / 1024,
        shm: per((m) => m.rssShmem) / 1024,
        segment: segPer === undefined ? undefined : segPer / 1024,
        bookkeeping: segPer === undefined ? undefined : segPer - 2 * cfg.fifoSize,
        openUs: (opened.seconds * 1e6) / n,
        p50idle0: (pp0.p50 + pp0b.p50) / 2,
        p50idleN: ppN.p50,
        p50growth: ppN.p50 / ((pp0.p50 + pp0b.p50) / 2),
        cpuIdle0: (pp0.cpuPerRt + pp0b.cpuPerRt) / 2,
        cpuIdleN: ppN.cpuPerRt,
        cpuGrowth: ppN.cpuPerRt / ((pp0.cpuPerRt + pp0b.cpuPerRt) / 2),
      },
      cutThrough: layer ? idleOk && pingOk : undefined,
      transportOk: idleOk && pingOk,
      detail: { pp0, ppN, pp0b, mem0, mem1, opened: { n: opened.n, seconds: opened.seconds, kinds: opened.kinds } },
    };
  } finally {
    await c.closeAll(children, 20000);
  }
}

async function run(opts = {}, log = () => {}) {
  const quick = !!opts.quick;
  const cfg = {
    runs: opts.runs || (quick ? 1 : 3),
    sessions: opts.sessions || (quick ? 1000 : 10000),
    iters: opts.iters || (quick ? 2000 : 10000),
    warmup: quick ? 500 : 2000,
    fifo: opts.fifo,
  };
  // The layer's defaults, from its own config (the build is there: checked before any benchmark).
  const { DEFAULT_FIFO_SIZE, DEFAULT_SEGMENT_SIZE } = require(path.join(c.REPO, 'dist', 'src', 'config'));
  const fifoSize = (cfg.fifoSize = cfg.fifo || DEFAULT_FIFO_SIZE);
  // The connector keeps every session's two fifos in one segment per peer (VLS_SEGMENT_SIZE, 16
  // GiB of address space by default, pages used on demand): the default holds N + 1 sessions
  // unless N or the fifos are very large; only then is the segment made larger.
  const GiB = 1024 ** 3;
  // A session takes its two fifos and about 1 KiB of the segment (2,044 sessions filled 1 GiB);
  // 4 x VLS_FIFO_SIZE + 4 KiB each leaves room to spare for other fifo sizes.
  const need = Math.ceil(((cfg.sessions + 64) * (4 * fifoSize + 4096)) / GiB) * GiB;
  cfg.segmentSize = opts.segment || (need > DEFAULT_SEGMENT_SIZE ? need : undefined);
  const placements = c.checkPlacements(opts.placements || ['same']);
  const variants = ['tcp', 'layer'];
  const tables = {};
  for (const pl of placements) {
    tables[pl] = new c.Table({
      id: `idle.${pl}`,
      setup: `${cfg.sessions} idle, ${c.PLACEMENTS[pl].short}`,
      title:
        `${cfg.sessions} idle connections, ${c.PLACEMENTS[pl].label}; per idle connection, both processes together; ` +
        `ping-pong ${cfg.iters} round trips; median [min-max] of ${c.plural(cfg.runs, 'run')}`,
      variants: variants.map((v) => VARIANTS[v]),
      metrics: [
        { id: 'rss', label: 'RSS KiB', short: 'rss', decimals: 2 },
        { id: 'heap', label: 'JS heap KiB', short: 'heap', decimals: 2 },
        { id: 'shm', label: 'shm touched KiB', short: 'shm', decimals: 2 },
        { id: 'segment', label: 'segment KiB', short: 'segment', decimals: 2 },
        { id: 'bookkeeping', label: 'segment B beyond the fifos', short: 'bookkeeping', decimals: 0, hidden: true },
        { id: 'heapExtra', label: "JS heap B beyond TCP's", short: 'heap extra', decimals: 0, hidden: true },
        { id: 'openUs', label: 'open µs', short: 'open', decimals: 0 },
        { id: 'p50idle0', label: 'rtt p50 0 idle', short: 'p50 0', decimals: 1 },
        { id: 'p50idleN', label: `rtt p50 ${cfg.sessions} idle`, short: 'p50 N', decimals: 1 },
        { id: 'cpuIdle0', label: 'CPU µs/rt 0 idle', short: 'cpu 0', decimals: 1 },
        { id: 'cpuIdleN', label: `CPU µs/rt ${cfg.sessions} idle`, short: 'cpu N', decimals: 1 },
        { id: 'p50growth', label: 'p50 N/0', short: 'p50 N/0', decimals: 2 },
        { id: 'cpuGrowth', label: 'CPU N/0', short: 'cpu N/0', decimals: 2 },
      ],
      ratios: [
        { metric: 'rss', vs: 'tcp' },
        { metric: 'heap', vs: 'tcp' },
      ],
    });
  }
  const t0 = Date.now();
  await c.interleave({ runs: cfg.runs, placements, variants }, (v, pl, round, runtime) =>
    c.measure(tables[pl], v, round, () => runOne(v, pl, cfg, runtime), log),
  );
  log('\n');
  // The layer's JS bookkeeping: its heap per idle connection beyond what TCP's takes in the same
  // round (both processes; net.Socket and its state are the same on both).
  for (const pl of placements) {
    for (const r of tables[pl].runs.filter((x) => x.variant === 'layer')) {
      const base = tables[pl].runs.find((x) => x.variant === 'tcp' && x.round === r.round);
      if (base && Number.isFinite(r.metrics.heap) && Number.isFinite(base.metrics.heap)) r.metrics.heapExtra = (r.metrics.heap - base.metrics.heap) * 1024;
    }
  }
  const checks = [];
  for (const pl of placements) {
    const s = tables[pl].summarize().values;
    checks.push(
      c.checkValue({
        table: tables[pl].id,
        label: `${pl}: layer segment per session beyond its 2 x ${fifoSize / 1024} KiB fifos`,
        variant: 'layer',
        metric: 'bookkeeping',
        value: s.layer.bookkeeping,
        op: '<=',
        limit: 1024,
        unit: ' B',
        decimals: 0,
      }),
    );
    checks.push(
      c.checkValue({
        table: tables[pl].id,
        label: `${pl}: layer JS heap per session beyond TCP's`,
        variant: 'layer',
        metric: 'heapExtra',
        value: s.layer.heapExtra,
        op: '<=',
        limit: 1024,
        unit: ' B',
        decimals: 0,
      }),
    );
    // The layer's targets; the TCP row is there to compare with.
    checks.push(
      c.checkValue({
        table: tables[pl].id,
        label: `${pl}: layer rtt p50, ${cfg.sessions} idle vs 0 idle`,
        variant: 'layer',
        metric: 'p50growth',
        value: s.layer.p50growth,
        op: '<=',
        limit: 1.1,
        unit: 'x',
      }),
    );
    checks.push(
      c.checkValue({
        table: tables[pl].id,
        label: `${pl}: layer CPU per rt, ${cfg.sessions} idle vs 0 idle`,
        variant: 'layer',
        metric: 'cpuGrowth',
        value: s.layer.cpuGrowth,
        op: '<=',
        limit: 1.1,
        unit: 'x',
      }),
    );
  }
  return {
    name: 'idle',
    title: `6. idle sessions: ${cfg.sessions} idle connections between two processes`,
    description:
      "memory = growth of both processes / idle connections (JS heap after a full GC); segment = the fifo segments in use, both processes " +
      `(worker stats segmentUsed); "does not grow" allows 10% for noise`,
    settings: { ...cfg, placements },
    seconds: (Date.now() - t0) / 1000,
    tables: placements.map((pl) => tables[pl].toJSON()),
    checks,
    notes: [
      cfg.segmentSize === undefined
        ? `layer runs use the default settings (VLS_SEGMENT_SIZE: ${DEFAULT_SEGMENT_SIZE / GiB} GiB of address space per peer; pages are used on demand)`
        : `layer runs use VLS_SEGMENT_SIZE=${cfg.segmentSize} (${(cfg.segmentSize / GiB).toFixed(1)} GiB of address space per peer; pages are used on demand)`,
    ],
  };
}

module.exports = { name: 'idle', options, run };

if (require.main === module) {
  const [role, kind, port] = process.argv.slice(2);
  if (role === 'child') {
    if (kind === 'server') server();
    else if (kind === 'client') client(Number(port));
    else throw new Error(`unknown role ${kind}`);
  } else {
    c.standalone(module.exports);
  }
}
