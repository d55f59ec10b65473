#!/usr/bin/env node
'use strict';
// The benchmark suite: every benchmark, plain Node and the layer side by side, in one run.
//   npm run bench [-- options]        or        node bench/run.js [options]
//   --quick               short smoke run (about half a minute)
//   --only a,b / --skip a,b   benchmarks: pingpong, bulk, http, connect, passthrough, idle
//   --out FILE            where the JSON goes (default bench/results/latest.json; a .md beside it)
//   --json                print the JSON instead of the tables
//   plus any option of the benchmarks themselves (--runs, --placements, --iters, --mib,
//   --duration, --connections, --conns, --sessions, ...), given to those that take it.
// Prints each benchmark's table as it finishes, then every target with pass/FAIL.
const fs = require('node:fs');
const path = require('node:path');
const c = require('./lib/common');
const { renderMarkdown } = require('./lib/markdown');

const BENCHMARKS = ['pingpong', 'bulk', 'http', 'connect', 'passthrough', 'idle'].map((n) => require(`./${n}`));

async function main() {
  const own = { quick: 'bool', only: 'list', skip: 'list', out: 'str', json: 'bool' };
  const spec = { ...own };
  for (const b of BENCHMARKS) Object.assign(spec, b.options);
  let opts;
  try {
    opts = c.parseArgs(process.argv.slice(2), spec);
    for (const n of [...(opts.only || []), ...(opts.skip || [])]) {
      if (!BENCHMARKS.some((b) => b.name === n)) {
        throw Object.assign(
          new TypeError(`unknown benchmark ${JSON.stringify(n)} (known: ${BENCHMARKS.map((b) => b.name).join(', ')})`),
          {
            code: 'ERR_INVALID_ARG_VALUE',
          },
        );
      }
    }
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    return 2;
  }
  c.requireBuilt();
  const chosen = BENCHMARKS.filter((b) => (!opts.only || opts.only.includes(b.name)) && !(opts.skip || []).includes(b.name));
  const out = path.resolve(opts.out || path.join(__dirname, 'results', 'latest.json'));
  const started = Date.now();
  const result = {
    suite: 'node-vls bench',
    command: `node bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
    machine: c.machineInfo(),
    quick: !!opts.quick,
    benchmarks: [],
  };
  const log = (m) => process.stderr.write(m);
  for (const b of chosen) {
    // Each benchmark gets the options it knows.
    const bo = { quick: opts.quick };
    for (const k of Object.keys(b.options)) if (opts[k] !== undefined) bo[k] = opts[k];
    log(`${b.name} `);
    const res = await b.run(bo, log);
    result.benchmarks.push(res);
    if (!opts.json) process.stdout.write(c.renderBenchmark(res) + '\n\n');
  }
  result.seconds = (Date.now() - started) / 1000;
  const checks = result.benchmarks.flatMap((b) => b.checks.map((x) => ({ benchmark: b.name, ...x })));
  const failures = result.benchmarks.flatMap((b) => b.tables.flatMap((t) => t.failures.map((f) => ({ table: t.id, ...f }))));
  result.summary = { targets: checks.length, passed: checks.filter((x) => x.pass).length, failedRuns: failures.length };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  fs.writeFileSync(out.replace(/\.json$/, '') + '.md', renderMarkdown(result));
  if (opts.json) {
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } else {
    process.stdout.write(`targets met: ${result.summary.passed} of ${result.summary.targets}\n`);
    for (const x of checks) process.stdout.write(`  ${x.pass ? 'pass' : 'FAIL'}  ${x.benchmark}: ${x.label}\n`);
    if (failures.length) {
      process.stdout.write(`\n${failures.length} run(s) FAILED and were left out of the numbers:\n`);
      for (const f of failures)
        process.stdout.write(`  ${f.table} ${f.variant} round ${f.round + 1}: ${f.error.split('\n')[0].slice(0, 300)}\n`);
    }
    const m = result.machine;
    process.stdout.write(
      `\n${result.seconds.toFixed(0)} s; node ${m.node}, ${m.cpus} CPUs (${m.cpuModel}), Linux ${m.kernel}, commit ${m.commit}${m.dirty ? ' (modified)' : ''}\n` +
        `written: ${path.relative(process.cwd(), out)} and ${path.relative(process.cwd(), out.replace(/\.json$/, '') + '.md')}\n`,
    );
  }
  // The report is written either way; a failed run makes the command fail.
  return failures.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    // A bad option found by a benchmark (a placement, a variant): the message is enough.
    if (e && e.code === 'ERR_INVALID_ARG_VALUE') {
      process.stderr.write(`\n${e.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`\n${e.stack || e}\n`);
    process.exit(1);
  },
);
