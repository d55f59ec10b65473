'use strict';
// Shared pieces of the benchmark suite (orchestrator side and child side).
//
//   orchestrator (bench/<name>.js run())            children (the same file, a role argument)
//     spawnNode({ layer, cpu, ... }) ------------->  node [--require preload] bench/<name>.js <role>
//     child.waitFor('READY') <---------------------  report('READY', {...})
//     child.send('cmd ...')  --------------------->  onCommand((line) => ...)
//     child.waitFor('RESULT') <--------------------  report('RESULT', {...})
//     child.close(): stdin ends ------------------>  exits (a child never outlives its parent's pipe)
//
// Every wait has a timeout; a child that dies or hangs fails the run with its stderr tail.
// Numbers: latencies go into an HDR histogram (hdr-histogram-js) in nanoseconds and are reported in
// µs; each variant runs several times, interleaved with the others (A B C A B C ...), and the
// tables show the median of the runs and their min-max spread.
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO = path.join(__dirname, '..', '..');
const PRELOAD = path.join(REPO, 'preload', 'index.js');
const NAMESPACE = 'bench';

// ---- options ---------------------------------------------------------------------------------

/**
 * Parses `--key value`, `--key=value` and `--flag` arguments. `spec` maps each known option to
 * 'bool' | 'int' | 'num' | 'list' | 'str'; an unknown option or a bad value throws a TypeError with
 * code ERR_INVALID_ARG_VALUE.
 */
function parseArgs(argv, spec) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (!a.startsWith('--')) throw argError(`unexpected argument ${JSON.stringify(a)}`);
    let value;
    const eq = a.indexOf('=');
    if (eq > 0) {
      value = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const key = a.slice(2);
    const type = spec[key];
    if (!type)
      throw argError(
        `unknown option ${a} (known: ${Object.keys(spec)
          .map((k) => `--${k}`)
          .join(' ')})`,
      );
    if (type === 'bool') {
      out[key] = value === undefined ? true : !['0', 'false', 'no'].includes(value);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw argError(`${a} needs a value`);
    }
    if (type === 'int' || type === 'num') {
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0 || (type === 'int' && !Number.isInteger(n))) {
        throw argError(`${a} must be a positive ${type === 'int' ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
      }
      out[key] = n;
    } else if (type === 'list') {
      out[key] = value.split(',').filter(Boolean);
    } else {
      out[key] = value;
    }
  }
  return out;
}

function argError(msg) {
  const e = new TypeError(msg);
  e.code = 'ERR_INVALID_ARG_VALUE';
  return e;
}

/** The CPU placements: where the two processes of a run are pinned (taskset -c). */
const PLACEMENTS = {
  same: { label: 'same CPU (both processes taskset -c 0)', short: 'same CPU', server: 0, client: 0 },
  split: { label: 'one per CPU (taskset -c 0 / taskset -c 1)', short: 'one per CPU', server: 0, client: 1 },
  unpinned: { label: 'unpinned (the scheduler places them)', short: 'unpinned', server: null, client: null },
};

function checkPlacements(list) {
  for (const p of list) {
    if (!PLACEMENTS[p]) throw argError(`unknown placement ${JSON.stringify(p)} (known: ${Object.keys(PLACEMENTS).join(', ')})`);
    if (p === 'split' && os.availableParallelism() < 2) throw argError('placement split needs two CPUs');
  }
  return list;
}

function checkVariants(list, known) {
  for (const v of list)
    if (!known.includes(v)) throw argError(`unknown variant ${JSON.stringify(v)} (known: ${known.join(', ')})`);
  return list;
}

/** Refuses to run on a tree that is not built (the layer variants would silently be kernel TCP). */
function requireBuilt() {
  const missing = [path.join(REPO, 'dist', 'src', 'preload.js'), path.join(REPO, 'build', 'Release', 'vls.node')].filter(
    (f) => !fs.existsSync(f),
  );
  if (missing.length) {
    const e = new Error(`bench: ${missing.join(', ')} missing; run \`npm install\` (or \`npm run build\`) first`);
    e.code = 'ERR_VLS_NOT_BUILT';
    throw e;
  }
}

// ---- processes -------------------------------------------------------------------------------

const runtimes = new Set();
let cleanupInstalled = false;

/**
 * A private VLS_RUNTIME_DIR (namespaces live under it), removed by the caller; also removed if the
 * orchestrator is interrupted (its children exit by themselves when their stdin closes).
 */
function makeRuntime() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vls-bench-'));
  runtimes.add(dir);
  if (!cleanupInstalled) {
    cleanupInstalled = true;
    process.once('exit', () => {
      for (const d of runtimes) fs.rmSync(d, { recursive: true, force: true });
    });
    process.once('SIGINT', () => process.exit(130));
    process.once('SIGTERM', () => process.exit(143));
  }
  return dir;
}

/**
 * The environment of a benchmark child: the parent's, minus NODE_OPTIONS (a preload or a test
 * runner's loader there would change what runs) and minus every VLS_* knob, plus the bench
 * namespace in the private runtime dir and the variant's own knobs.
 */
function childEnv(runtime, extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('VLS_')) continue;
    env[k] = v;
  }
  return { ...env, VLS_NAMESPACE: NAMESPACE, VLS_RUNTIME_DIR: runtime, ...extra };
}

class Child {
  constructor(proc, name) {
    this.proc = proc;
    this.name = name;
    this.pid = proc.pid;
    this.lines = [];
    this.waiters = [];
    this.stderr = '';
    this.exited = false;
    this.exitInfo = null;
    let buf = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      this.wake();
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-4000);
    });
    proc.stdin.on('error', () => {}); // a child that exited: its commands fail through waitFor
    this.exitPromise = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exited = true;
        this.exitInfo = { code, signal };
        this.wake();
        resolve(this.exitInfo);
      });
      proc.on('error', (err) => {
        this.exited = true;
        this.exitInfo = { code: null, signal: null, error: err };
        this.wake();
        resolve(this.exitInfo);
      });
    });
  }

  wake() {
    for (const w of this.waiters.slice()) w();
  }

  /** The next line `PREFIX {json}` (parsed), in order; rejects on timeout or exit. */
  waitFor(prefix, timeoutMs = 60000) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        const i = this.lines.findIndex((l) => l === prefix || l.startsWith(prefix + ' '));
        if (i >= 0) {
          const line = this.lines.splice(i, 1)[0];
          done();
          const rest = line.slice(prefix.length).trim();
          try {
            resolve(rest ? JSON.parse(rest) : {});
          } catch (e) {
            reject(new Error(`${this.name}: bad ${prefix} line: ${line}`));
          }
          return;
        }
        if (this.exited) {
          done();
          const why = this.exitInfo.error
            ? this.exitInfo.error.message
            : `code ${this.exitInfo.code} signal ${this.exitInfo.signal}`;
          reject(new Error(`${this.name} exited (${why}) before ${prefix}; stderr: ${this.stderr.trim().slice(-1500)}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      timer = setTimeout(() => {
        done();
        this.kill();
        reject(new Error(`${this.name}: no ${prefix} within ${timeoutMs} ms; stderr: ${this.stderr.trim().slice(-1500)}`));
      }, timeoutMs);
      this.waiters.push(check);
      check();
    });
  }

  send(line) {
    if (!this.exited) this.proc.stdin.write(line + '\n');
  }

  kill() {
    if (!this.exited) this.proc.kill('SIGKILL');
  }

  /** Ends stdin (the child exits on that) and waits; SIGKILL after the grace period. */
  async close(graceMs = 5000) {
    if (!this.exited) this.proc.stdin.end();
    const t = setTimeout(() => this.kill(), graceMs);
    await this.exitPromise;
    clearTimeout(t);
  }
}

/**
 * Starts `node [--require preload] <script> <args>` (optionally under taskset -c <cpu>).
 * layer: with the preload (the layer variant); otherwise plain Node.
 */
function spawnNode({ script, args = [], layer = false, cpu = null, runtime, env = {}, nodeArgs = [], name }) {
  const argv = [...nodeArgs, ...(layer ? ['--require', PRELOAD] : []), script, ...args.map(String)];
  const cmd = cpu === null || cpu === undefined ? process.execPath : 'taskset';
  const cmdArgs = cmd === 'taskset' ? ['-c', String(cpu), process.execPath, ...argv] : argv;
  const proc = spawn(cmd, cmdArgs, { env: childEnv(runtime, env), stdio: ['pipe', 'pipe', 'pipe'] });
  return new Child(proc, name || `${path.basename(script)} ${args[0] || ''}`);
}

/** Closes every child (in parallel), ignoring those already gone. */
async function closeAll(children, graceMs) {
  await Promise.all(children.filter(Boolean).map((c) => c.close(graceMs)));
}

// ---- child side ------------------------------------------------------------------------------

/** Prints `PREFIX {json}` for the orchestrator. */
function report(prefix, obj) {
  process.stdout.write(`${prefix} ${JSON.stringify(obj)}\n`);
}

/** Calls fn(line) for each command line on stdin; exits when stdin ends (the parent is done or gone). */
function onCommand(fn) {
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) fn(line);
    }
  });
  process.stdin.on('end', () => process.exit(0));
}

/** Whether the layer is active in this process (the preload ran and was not disabled). */
function layerActive() {
  return globalThis[Symbol.for('node-vls.started')] === true;
}

/** The class of a socket's handle: 'SessionHandle' (cut-through), 'TCP' (kernel), 'Pipe' (Unix). */
function handleKind(socket) {
  const h = socket && socket._handle;
  return h && h.constructor ? h.constructor.name : 'none';
}

/** CPU time (user + system) since `since` (a process.cpuUsage() value), in µs. */
function cpuSince(since) {
  const d = process.cpuUsage(since);
  return { user: d.user, system: d.system, total: d.user + d.system };
}

/** VmRSS, RssAnon, RssShmem of a process, in bytes (from /proc/<pid>/status). */
function procMemory(pid = process.pid) {
  const txt = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(txt);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rss: kb('VmRSS'), rssAnon: kb('RssAnon'), rssShmem: kb('RssShmem'), rssFile: kb('RssFile') };
}

let hdr;
/** An HDR histogram for nanosecond values (3 significant digits: 10 ns steps at 10 µs). */
function newHistogram() {
  hdr = hdr || require('hdr-histogram-js');
  return hdr.build({
    bitBucketSize: 64,
    autoResize: true,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60e9,
    numberOfSignificantValueDigits: 3,
  });
}

/** p50/p99/p99.9/max/mean in µs, and the count, of a nanosecond histogram. */
function histSummary(h) {
  const us = (ns) => ns / 1000;
  return {
    count: h.totalCount,
    p50: us(h.getValueAtPercentile(50)),
    p99: us(h.getValueAtPercentile(99)),
    p999: us(h.getValueAtPercentile(99.9)),
    max: us(h.getValueAtPercentile(100)), // as the percentiles read (vls ab's latencyOf does the same)
    mean: us(h.mean),
  };
}

// ---- tables ----------------------------------------------------------------------------------

function median(xs) {
  const s = xs.slice().sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function spread(xs) {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs };
}

/**
 * One table of a benchmark: variants (rows) x metrics (columns), filled run by run. Ratios pair
 * the runs of the same round (variants of a round ran next to each other), so a ratio's spread is
 * the spread of those paired ratios and its value their median.
 */
class Table {
  constructor({ id, title, setup, variants, metrics, ratios = [], note }) {
    this.id = id;
    this.title = title;
    this.setup = setup; // a short name of what is fixed in this table (placement, connections)
    this.note = note;
    this.variants = variants; // [{ id, label, layer?: bool }]
    this.metrics = metrics; // [{ id, label, decimals }]
    this.ratioSpecs = ratios; // [{ metric, vs, label }]
    this.runs = []; // { variant, round, metrics: {}, ...extra }
  }

  add(variant, round, metrics, extra = {}) {
    this.runs.push({ variant, round, metrics, ...extra });
  }

  /** A run that failed (a child died, hung or misbehaved): kept out of the numbers, reported. */
  fail(variant, round, err) {
    this.failures = this.failures || [];
    this.failures.push({ variant, round, error: String((err && err.message) || err) });
  }

  /** Summaries: values[variant][metric] = { median, min, max, runs }. */
  summarize() {
    const values = {};
    for (const v of this.variants) {
      values[v.id] = {};
      const runs = this.runs.filter((r) => r.variant === v.id);
      // Every metric a run recorded, shown in the table or not (checks may use the others).
      const keys = new Set(this.metrics.map((m) => m.id));
      for (const r of runs) for (const k of Object.keys(r.metrics)) keys.add(k);
      for (const k of keys) {
        const xs = runs.map((r) => r.metrics[k]).filter((x) => typeof x === 'number' && Number.isFinite(x));
        if (xs.length) values[v.id][k] = spread(xs);
      }
    }
    const ratios = [];
    for (const spec of this.ratioSpecs) {
      for (const v of this.variants) {
        if (v.id === spec.vs) continue;
        const xs = [];
        for (const r of this.runs.filter((x) => x.variant === v.id)) {
          const base = this.runs.find((x) => x.variant === spec.vs && x.round === r.round);
          const a = r.metrics[spec.metric];
          const b = base && base.metrics[spec.metric];
          // Both sides positive: a memory growth measured below zero (noise at a small scale) or
          // a zero baseline (no shared memory for TCP) makes no ratio.
          if (typeof a === 'number' && typeof b === 'number' && a > 0 && b > 0) xs.push(a / b);
        }
        if (xs.length) ratios.push({ variant: v.id, metric: spec.metric, vs: spec.vs, ...spread(xs) });
      }
    }
    const cutThrough = {};
    for (const v of this.variants.filter((x) => x.layer)) {
      const runs = this.runs.filter((r) => r.variant === v.id);
      cutThrough[v.id] = { runs: runs.length, cutThrough: runs.filter((r) => r.cutThrough === true).length };
    }
    return { values, ratios, cutThrough };
  }

  ratio(variant, metric, vs) {
    return this.summarize().ratios.find((r) => r.variant === variant && r.metric === metric && r.vs === vs);
  }

  toJSON() {
    const s = this.summarize();
    return {
      id: this.id,
      title: this.title,
      setup: this.setup,
      note: this.note,
      variants: this.variants,
      metrics: this.metrics,
      values: s.values,
      ratios: s.ratios,
      cutThrough: s.cutThrough,
      runs: this.runs,
      failures: this.failures || [],
    };
  }
}

/** A target: ratio (variant/vs on metric) op limit. Returns the check record. */
function check(table, { variant, metric, vs, op, limit, label }) {
  const r = table.ratio(variant, metric, vs);
  const value = r ? r.median : NaN;
  const pass =
    Number.isFinite(value) &&
    (op === '<=' ? value <= limit : op === '<' ? value < limit : op === '>=' ? value >= limit : value > limit);
  return {
    table: table.id,
    label,
    variant,
    metric,
    vs,
    op,
    limit,
    unit: 'x',
    value,
    min: r ? r.min : NaN,
    max: r ? r.max : NaN,
    pass,
  };
}

/** A target on a measured value (not a ratio): { median, min, max } op limit. */
function checkValue({ table, label, variant, metric, value, op, limit, unit = '', decimals = 2 }) {
  const v = value && Number.isFinite(value.median) ? value.median : NaN;
  const pass = Number.isFinite(v) && (op === '<=' ? v <= limit : op === '<' ? v < limit : op === '>=' ? v >= limit : v > limit);
  return {
    table,
    label,
    variant,
    metric,
    op,
    limit,
    unit,
    decimals,
    value: v,
    min: value ? value.min : NaN,
    max: value ? value.max : NaN,
    pass,
  };
}

function fmtNum(x, d) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '-';
  return x.toFixed(d);
}

function fmtCell(s, d) {
  if (!s) return '-';
  if (s.runs.length === 1) return fmtNum(s.median, d);
  return `${fmtNum(s.median, d)} [${fmtNum(s.min, d)}-${fmtNum(s.max, d)}]`;
}

/** Renders one table as text lines. */
function renderTable(t) {
  const j = t.toJSON ? t.toJSON() : t;
  const rows = [];
  const shown = j.metrics.filter((m) => !m.hidden);
  const head = ['variant', ...shown.map((m) => m.label)];
  const ratioCols = [];
  for (const r of j.ratios) {
    const key = `${r.metric}/${r.vs}`;
    if (!ratioCols.includes(key)) ratioCols.push(key);
  }
  const ratioLabel = (key) => {
    const [metric, vs] = key.split('/');
    const m = j.metrics.find((x) => x.id === metric);
    const v = j.variants.find((x) => x.id === vs);
    return `${m ? m.short || m.id : metric} vs ${v ? v.short || v.id : vs}`;
  };
  head.push(...ratioCols.map(ratioLabel));
  rows.push(head);
  for (const v of j.variants) {
    const row = [
      v.label +
        (v.layer && j.cutThrough[v.id] && j.cutThrough[v.id].cutThrough < j.cutThrough[v.id].runs ? ' (NOT cut-through!)' : ''),
    ];
    for (const m of shown) row.push(fmtCell(j.values[v.id] && j.values[v.id][m.id], m.decimals));
    for (const key of ratioCols) {
      const [metric, vs] = key.split('/');
      const r = j.ratios.find((x) => x.variant === v.id && x.metric === metric && x.vs === vs);
      row.push(
        r
          ? r.runs.length > 1
            ? `${fmtNum(r.median, 2)}x [${fmtNum(r.min, 2)}-${fmtNum(r.max, 2)}]`
            : `${fmtNum(r.median, 2)}x`
          : '',
      );
    }
    rows.push(row);
  }
  const widths = head.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  const lines = [`-- ${j.title}`];
  if (j.note) lines.push(`   ${j.note}`);
  for (const r of rows)
    lines.push(
      '   ' +
        r
          .map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i])))
          .join('  ')
          .trimEnd(),
    );
  for (const f of j.failures || [])
    lines.push(`   FAILED RUN (left out): ${f.variant}, round ${f.round + 1}: ${f.error.split('\n')[0].slice(0, 300)}`);
  return lines;
}

/** Renders a benchmark result (title, tables, checks) as text. */
function renderBenchmark(res) {
  const lines = [`== ${res.title}`];
  if (res.description) lines.push(`   ${res.description}`);
  for (const t of res.tables) lines.push(...renderTable(t));
  if (res.checks.length) {
    lines.push('   targets:');
    const w = Math.max(...res.checks.map((c) => c.label.length));
    for (const c of res.checks) {
      const d = c.decimals === undefined ? 2 : c.decimals;
      const u = c.unit === undefined ? 'x' : c.unit;
      const range = Number.isFinite(c.min) && c.min !== c.max ? ` [${fmtNum(c.min, d)}-${fmtNum(c.max, d)}]` : '';
      lines.push(
        `     ${c.label.padEnd(w)}  ${c.op} ${c.limit}${u}   got ${fmtNum(c.value, d)}${u}${range}   ${c.pass ? 'pass' : 'FAIL'}`,
      );
    }
  }
  for (const n of res.notes || []) lines.push(`   note: ${n}`);
  return lines.join('\n');
}

/** "1 run", "3 runs". */
function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * Runs one measurement and files it in the table; a run that fails is recorded as a failure and
 * the suite goes on (one hang must not cost the whole run), printed as 'x' in the progress dots.
 */
async function measure(table, variant, round, fn, log) {
  let r;
  try {
    r = await fn();
  } catch (e) {
    table.fail(variant, round, e);
    log('x');
    return;
  }
  const { metrics, ...extra } = r;
  table.add(variant, round, metrics, extra);
  log('.');
}

/** Rotates a list by `k` (so each round starts with a different variant). */
function rotate(list, k) {
  const n = list.length;
  const s = ((k % n) + n) % n;
  return [...list.slice(s), ...list.slice(0, s)];
}

/**
 * A ping-pong counter: feed it the byte counts that arrive (onBytes); per whole reply of `size`
 * bytes it records the round trip in an HDR histogram (after `warm` replies), sends the next ping
 * with send(), and after `iters` timed replies calls done(summary with CPU since the warm-up,
 * the histogram) and returns false. start() sends the first ping.
 */
function pingPonger({ size, warm, iters, send, done }) {
  const hist = newHistogram();
  let k = 0;
  let got = 0;
  let t0 = 0n;
  let cpu0 = process.cpuUsage();
  return {
    start() {
      if (warm === 0) cpu0 = process.cpuUsage();
      t0 = process.hrtime.bigint();
      send();
    },
    onBytes(n) {
      got += n;
      while (got >= size) {
        got -= size;
        const t1 = process.hrtime.bigint();
        // Warm-up round trips are recorded too, then dropped: the measured ones run exactly the
        // code V8 optimized during the warm-up (a path first taken at the switch deoptimizes and
        // recompiles mid-measurement, which showed in the p99).
        hist.recordValue(Number(t1 - t0));
        k++;
        if (k === warm) {
          hist.reset();
          cpu0 = process.cpuUsage();
        }
        if (k === warm + iters) {
          done({ ...histSummary(hist), cpu: cpuSince(cpu0) }, hist);
          return false;
        }
        t0 = process.hrtime.bigint();
        send();
      }
      return true;
    },
  };
}

/**
 * The A/B interleave every benchmark uses: for each round, each placement, each extra setting
 * (`inner`, e.g. connection counts) and each variant (their order rotating by round), await
 * fn(variant, placement, round, runtime, inner). One private runtime dir for all, removed after.
 */
async function interleave({ runs, placements, variants, inner = [undefined] }, fn) {
  const runtime = makeRuntime();
  try {
    for (let round = 0; round < runs; round++) {
      for (const pl of placements) {
        for (const x of inner) {
          for (const v of rotate(variants, round)) await fn(v, pl, round, runtime, x);
        }
      }
    }
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
}

/** Short facts about where the numbers came from. */
function machineInfo() {
  let commit = 'unknown';
  let dirty = false;
  const r = spawnSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (r.status === 0) commit = r.stdout.trim();
  const d = spawnSync('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' });
  if (d.status === 0) dirty = d.stdout.trim() !== '';
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    kernel: os.release(),
    cpus: os.availableParallelism(),
    cpuModel: cpus[0] ? cpus[0].model : 'unknown',
    commit,
    dirty,
  };
}

/** Runs a benchmark module stand-alone: parse options, run, print (or --json). */
function standalone(mod) {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2), { ...mod.options, json: 'bool', quick: 'bool' });
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  requireBuilt();
  mod
    .run(opts, (msg) => process.stderr.write(msg))
    .then((res) => {
      if (opts.json) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
      else process.stdout.write(renderBenchmark(res) + '\n');
      if (res.tables.some((t) => t.failures.length)) process.exitCode = 1;
    })
    .catch((e) => {
      if (e && e.code === 'ERR_INVALID_ARG_VALUE') {
        process.stderr.write(`${e.message}\n`);
        process.exit(2);
      }
      process.stderr.write(`${e.stack || e}\n`);
      process.exit(1);
    });
}

module.exports = {
  interleave,
  pingPonger,
  REPO,
  PRELOAD,
  NAMESPACE,
  PLACEMENTS,
  Table,
  check,
  checkValue,
  checkPlacements,
  checkVariants,
  closeAll,
  cpuSince,
  handleKind,
  histSummary,
  layerActive,
  machineInfo,
  measure,
  makeRuntime,
  median,
  newHistogram,
  onCommand,
  parseArgs,
  plural,
  procMemory,
  renderBenchmark,
  renderTable,
  report,
  requireBuilt,
  rotate,
  spawnNode,
  spread,
  standalone,
};
