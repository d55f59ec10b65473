/* The benchmark suite runs end to end on a tiny scale and its report is well formed: every
 * benchmark present, every number finite, the layer rows really cut-through and the plain rows
 * really on the kernel. No time or ratio is asserted (the numbers are whatever the machine gives). */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';

const run = path.join(__dirname, '..', 'bench', 'run.js');

interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}
interface TableJson {
  id: string;
  title: string;
  variants: { id: string; label: string; layer?: boolean }[];
  metrics: { id: string; label: string }[];
  values: Record<string, Record<string, Spread>>;
  ratios: (Spread & { variant: string; metric: string; vs: string })[];
  cutThrough: Record<string, { runs: number; cutThrough: number }>;
  runs: { variant: string; round: number; metrics: Record<string, number>; cutThrough?: boolean; transportOk?: boolean }[];
  failures: { variant: string; round: number; error: string }[];
}
interface BenchJson {
  name: string;
  seconds: number;
  title: string;
  settings: { runs: number };
  tables: TableJson[];
  checks: { label: string; value: number; limit: number; op: string; pass: boolean }[];
  notes: string[];
}
interface SuiteJson {
  machine: { node: string; cpus: number; commit: string };
  benchmarks: BenchJson[];
  summary: { targets: number; passed: number };
}

function finite(x: unknown): boolean {
  return typeof x === 'number' && Number.isFinite(x);
}

t.test('bench/run.js --quick on a tiny scale: a well-formed report of every benchmark', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vls-bench-t-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'r.json');
  const args = [
    run,
    '--quick',
    '--placements',
    'same',
    '--runs',
    '1',
    '--iters',
    '200',
    '--warmup',
    '50',
    '--mib',
    '8',
    '--duration',
    '0.3',
    '--http-warmup',
    '0.1',
    '--connections',
    '2',
    '--conns',
    '30',
    '--sessions',
    '30',
    '--out',
    out,
  ];
  // Without the test runner's NODE_OPTIONS: its process-info hook would follow the suite into every
  // benchmark child (the suite strips NODE_OPTIONS from its children, the hook puts it back).
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 150_000, env: { ...process.env, NODE_OPTIONS: '' } });
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr.slice(-2000)})`);
  t.match(r.stdout, /targets met: \d+ of \d+/);
  const names = ['pingpong', 'bulk', 'http', 'connect', 'passthrough', 'idle'];
  const res = JSON.parse(fs.readFileSync(out, 'utf8')) as SuiteJson;
  t.ok(fs.readFileSync(out.replace(/\.json$/, '.md'), 'utf8').includes('| variant |'), 'a Markdown report beside the JSON');
  t.same(
    res.benchmarks.map((b) => b.name),
    names,
    'every benchmark ran, in order',
  );
  t.equal(res.machine.node, process.version);
  t.ok(finite(res.summary.targets) && res.summary.targets > 0);
  t.comment(res.benchmarks.map((b) => `${b.name} ${b.seconds} s`).join(', '));
  for (const b of res.benchmarks) {
    t.match(r.stdout, b.title, `${b.name}: its table is printed`);
    t.ok(b.tables.length > 0, `${b.name}: has tables`);
    for (const tab of b.tables) {
      t.same(tab.failures, [], `${tab.id}: no run failed`);
      t.ok(tab.variants.some((v) => v.layer) || b.name === 'passthrough', `${tab.id}: has a layer row`);
      for (const v of tab.variants) {
        const vals = tab.values[v.id];
        t.ok(vals, `${tab.id} ${v.id}: has values`);
        const runs = tab.runs.filter((x) => x.variant === v.id);
        t.equal(runs.length, b.settings.runs, `${tab.id} ${v.id}: one entry per run`);
        for (const m of tab.metrics) {
          // idle: the segment columns exist for the layer only (a kernel socket has no fifos), and
          // so does the heap beyond TCP's
          if (tab.id.startsWith('idle') && v.id === 'tcp' && ['segment', 'bookkeeping', 'heapExtra'].includes(m.id)) continue;
          const s = vals?.[m.id];
          t.ok(s && finite(s.median) && finite(s.min) && finite(s.max), `${tab.id} ${v.id} ${m.id}: finite`);
        }
        if (v.layer) {
          const ct = tab.cutThrough[v.id];
          t.ok(ct && ct.runs > 0 && ct.cutThrough === ct.runs, `${tab.id} ${v.id}: every run went cut-through`);
          t.ok(
            runs.every((x) => x.cutThrough === true),
            `${tab.id} ${v.id}: runs marked cut-through`,
          );
        }
        t.ok(
          runs.every((x) => x.transportOk === true),
          `${tab.id} ${v.id}: the transport was the one named`,
        );
      }
      for (const ra of tab.ratios)
        t.ok(finite(ra.median) && ra.median > 0, `${tab.id} ${ra.variant}/${ra.vs} ${ra.metric}: finite ratio`);
    }
    for (const c of b.checks) {
      t.ok(finite(c.value) && finite(c.limit) && typeof c.pass === 'boolean', `${b.name} "${c.label}": a value and a verdict`);
    }
  }
  t.end();
});

t.test('bad options are refused with a message, before anything runs', (t) => {
  for (const [args, re] of [
    [['--bogus'], /unknown option --bogus/],
    [['--only', 'nope'], /unknown benchmark "nope"/],
    [['--runs', '0'], /--runs must be a positive integer/],
    [['--placements', 'moon'], /unknown placement "moon"/],
  ] as [string[], RegExp][]) {
    const r = spawnSync(
      process.execPath,
      [run, '--only', 'connect', '--out', path.join(os.tmpdir(), 'vls-never.json'), ...args],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    t.not(r.status, 0, `${args.join(' ')}: fails`);
    t.match(r.stderr, re, `${args.join(' ')}: says why`);
  }
  t.end();
});
