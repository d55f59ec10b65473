/**
 * What a person reads: the terminal table and the self-contained HTML report (inline SVG, inline
 * CSS, no script and no external URL, so it opens anywhere and can be mailed or archived).
 */
import { decodeHistogram, percentileCurve } from './histogram';
import { METRICS, metricOf } from './metrics';
import type { AbMetric, AbResult, AbRound, AbSideResult } from './types';

const LABELS: Record<AbMetric, string> = {
  p50: 'latency p50',
  p90: 'latency p90',
  p99: 'latency p99',
  p999: 'latency p99.9',
  max: 'latency max',
  throughput: 'throughput',
  clientCpuPerOp: 'client CPU',
  serverCpuPerOp: 'server CPU',
};

function unitOf(r: AbResult, m: AbMetric): string {
  if (m === 'throughput') return r.units.throughput;
  if (m === 'clientCpuPerOp' || m === 'serverCpuPerOp') return r.units.cpuPerOp.replace('us', 'µs');
  return r.options.workload === 'bulk' ? 'µs, write' : 'µs';
}

/** A figure with about 3 significant digits, thousands grouped. */
export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a === 0) return '0';
  return v.toPrecision(3);
}

function fmtRatio(v: number | null): string {
  return v === null ? '-' : `${v.toFixed(2)}x`;
}

/** One line saying what was measured. */
export function describe(r: AbResult): string {
  const o = r.options;
  const what =
    o.workload === 'echo'
      ? `echo ping-pong, ${o.size} B messages`
      : o.workload === 'http'
        ? `HTTP keep-alive ${o.size > 0 ? `POST ${o.size} B` : 'GET'} ${o.path}`
        : `bulk stream, ${o.size} B writes`;
  const loop = o.rate !== null ? `open loop at ${fmt(o.rate)}/s` : 'closed loop';
  const window = o.duration !== null ? `${o.duration} s` : `${o.requests} ops`;
  return (
    `${what}, ${o.connections} connection${o.connections === 1 ? '' : 's'}, ${o.workload === 'bulk' ? 'streaming' : loop}, ` +
    `${o.rounds} round${o.rounds === 1 ? '' : 's'} x ${window} per side (+${o.warmup} s warmup), placement ${o.placement}`
  );
}

export function commandLine(r: AbResult): string {
  return r.options.server.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

interface Row {
  label: string;
  a: string;
  b: string;
  ratio: string;
  spread: string;
}

function rows(r: AbResult): Row[] {
  const out: Row[] = METRICS.map((m) => {
    const ra = r.ratios[m];
    return {
      label: `${LABELS[m]} (${unitOf(r, m)})`,
      a: fmt(metricOf(r.sides.A.merged, m)),
      b: fmt(metricOf(r.sides.B.merged, m)),
      ratio: fmtRatio(ra.merged),
      spread: ra.min === null || ra.max === null ? '-' : `${ra.min.toFixed(2)}-${ra.max.toFixed(2)}x`,
    };
  });
  out.push({
    label: 'transport (client sockets)',
    a: r.sides.A.merged.transport.kind,
    b: r.sides.B.merged.transport.kind,
    ratio: '',
    spread: '',
  });
  return out;
}

/** The terminal table (plain text, no colour). */
export function formatTable(r: AbResult): string {
  const rs = rows(r);
  const head: Row = { label: '', a: 'A plain', b: 'B vls', ratio: 'B/A', spread: 'B/A rounds' };
  const all = [head, ...rs];
  const w = {
    label: Math.max(...all.map((x) => x.label.length)),
    a: Math.max(...all.map((x) => x.a.length)),
    b: Math.max(...all.map((x) => x.b.length)),
    ratio: Math.max(...all.map((x) => x.ratio.length)),
    spread: Math.max(...all.map((x) => x.spread.length)),
  };
  const line = (x: Row): string =>
    `${x.label.padEnd(w.label)}  ${x.a.padStart(w.a)}  ${x.b.padStart(w.b)}  ${x.ratio.padStart(w.ratio)}  ${x.spread.padStart(w.spread)}`.trimEnd();
  const out = [`vls ab: ${describe(r)}`, `server: ${commandLine(r)}${r.options.builtin ? ' (built-in example)' : ''}`, '', line(head)];
  for (const x of rs) out.push(line(x));
  out.push('');
  out.push(
    `A: ${r.sides.A.label}; B: ${r.sides.B.label}. B/A below 1 is better for latency and CPU, above 1 for throughput.`,
  );
  for (const wn of r.warnings) out.push(`warning: ${wn}`);
  return out.join('\n') + '\n';
}

/** One line per finished side of a round (for logs and non-TTY progress). */
export function roundLine(round: AbRound, rounds: number, unit: string): string {
  return (
    `round ${round.round}/${rounds} ${round.side}: p50 ${fmt(round.latency.p50)} µs, p99 ${fmt(round.latency.p99)} µs, ` +
    `${fmt(round.throughput)} ${unit}, ${round.transport.kind}`
  );
}

// ---------------------------------------------------------------------------------------------
// HTML

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

const COLORS = { A: '#2f6fb3', B: '#e07b1a' } as const;

/** A tick label: a round number without trailing zeros, thousands grouped. */
function tick(v: number): string {
  return Number(v.toPrecision(3)).toLocaleString('en-US', { maximumFractionDigits: 6 });
}

/** A latency tick in µs, written in the unit that reads best: "20 µs", "2 ms", "1.5 s". */
function timeTick(us: number): string {
  if (us >= 1e6) return `${tick(us / 1e6)} s`;
  if (us >= 1e3) return `${tick(us / 1e3)} ms`;
  return `${tick(us)} µs`;
}

function niceLogTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  // 1-2-5 steps while they fit; only powers of ten over a wide range.
  const steps = Math.log10(hi / lo) > 4 ? [1] : [1, 2, 5];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of steps) {
      const v = m * Math.pow(10, e);
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

/** Latency by percentile: x = log10(1/(1-p)) (0%, 90%, 99%, ...), y = latency on a log scale. */
function percentileChart(r: AbResult): string {
  const W = 760;
  const H = 380;
  const m = { l: 76, r: 20, t: 20, b: 48 };
  const x = (p: number): number => Math.log10(100 / Math.max(100 - p, 1e-9));
  type Series = { side: 'A' | 'B'; pts: [number, number][]; merged: boolean };
  const series: Series[] = [];
  for (const s of [r.sides.A, r.sides.B]) {
    for (const rd of s.rounds) series.push({ side: s.side, pts: percentileCurve(decodeHistogram(rd.histogram), 10), merged: false });
    series.push({ side: s.side, pts: s.curve, merged: true });
  }
  // The maximum is drawn at the next decade past the last resolved percentile.
  const finite = series.flatMap((s) => s.pts.filter(([p]) => p < 100).map(([p]) => x(p)));
  const xMax = Math.max(1, Math.ceil(Math.max(0, ...finite) + 0.001));
  const xOf = (p: number): number => (p >= 100 ? xMax : Math.min(x(p), xMax));
  const vals = series.flatMap((s) => s.pts.map(([, v]) => v)).filter((v) => v > 0);
  const yLo = vals.length ? Math.pow(10, Math.floor(Math.log10(Math.min(...vals)))) : 1;
  const yHi = vals.length ? Math.pow(10, Math.ceil(Math.log10(Math.max(...vals) * 1.0001))) : 10;
  const px = (v: number): number => m.l + (v / xMax) * (W - m.l - m.r);
  const py = (v: number): number =>
    H - m.b - ((Math.log10(Math.max(v, yLo)) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="latency by percentile">`);
  for (const t of niceLogTicks(yLo, yHi)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${m.l - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end">${esc(timeTick(t))}</text>`);
  }
  for (let d = 0; d <= xMax; d++) {
    const label = d === 0 ? '0%' : `${(100 - 100 / Math.pow(10, d)).toFixed(Math.max(0, d - 2))}%`;
    parts.push(`<line y1="${m.t}" y2="${H - m.b}" x1="${px(d).toFixed(1)}" x2="${px(d).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${px(d).toFixed(1)}" y="${H - m.b + 18}" text-anchor="middle">${d === xMax ? 'max' : label}</text>`);
  }
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 8}" text-anchor="middle" class="axis">percentile</text>`);
  parts.push(
    `<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle" class="axis">latency (log scale)</text>`,
  );
  for (const s of [...series.filter((q) => !q.merged), ...series.filter((q) => q.merged)]) {
    if (s.pts.length === 0) continue;
    const d = s.pts.map(([p, v], i) => `${i ? 'L' : 'M'}${px(xOf(p)).toFixed(1)},${py(v).toFixed(1)}`).join('');
    parts.push(
      `<path d="${d}" fill="none" stroke="${COLORS[s.side]}" stroke-width="${s.merged ? 2.5 : 1}" ` +
        `stroke-opacity="${s.merged ? 1 : 0.35}"${s.merged ? '' : ' stroke-dasharray="4 3"'}/>`,
    );
  }
  parts.push(`<rect x="${m.l + 12}" y="${m.t + 8}" width="210" height="62" class="legend"/>`);
  ([['A', r.sides.A.label], ['B', r.sides.B.label]] as const).forEach(([k, label], i) => {
    const yy = m.t + 26 + i * 20;
    parts.push(`<line x1="${m.l + 20}" x2="${m.l + 44}" y1="${yy - 4}" y2="${yy - 4}" stroke="${COLORS[k]}" stroke-width="2.5"/>`);
    parts.push(`<text x="${m.l + 50}" y="${yy}">${k}: ${esc(label.replace(/ \(.*\)$/, ''))}</text>`);
  });
  parts.push(`<text x="${m.l + 20}" y="${m.t + 62}" class="small">thin dashed: single rounds</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

/** A round step (1, 2 or 5 times a power of ten) at or above `raw`. */
function niceStep(raw: number): number {
  const e = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * e >= raw) return m * e;
  return 10 * e;
}

/** Grouped bars: one group per round plus "all", A and B side by side, value on each bar. */
function barChart(
  title: string,
  groups: { name: string; a: number; b: number }[],
  unit: string,
): string {
  const W = 760;
  const H = 300;
  const m = { l: 64, r: 20, t: 28, b: 40 };
  const highest = Math.max(...groups.flatMap((g) => [g.a, g.b]), 1e-12);
  const step = niceStep(highest / 4);
  const top = Math.max(Math.ceil((highest * 1.12) / step), 1) * step;
  const gw = (W - m.l - m.r) / groups.length;
  const bw = Math.min(70, gw * 0.36);
  const py = (v: number): number => H - m.b - (v / top) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`);
  parts.push(`<text x="${m.l}" y="16" class="axis">${esc(title)} (${esc(unit)})</text>`);
  for (let i = 0; i * step <= top * 1.0001; i++) {
    const v = i * step;
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(v).toFixed(1)}" y2="${py(v).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${m.l - 6}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end">${esc(tick(v))}</text>`);
  }
  groups.forEach((g, i) => {
    const cx = m.l + gw * (i + 0.5);
    ([['A', g.a, cx - bw - 2], ['B', g.b, cx + 2]] as const).forEach(([k, v, x0]) => {
      const y = py(v);
      parts.push(
        `<rect x="${x0.toFixed(1)}" y="${y.toFixed(1)}" width="${bw.toFixed(1)}" height="${(H - m.b - y).toFixed(1)}" fill="${COLORS[k]}"/>`,
      );
      parts.push(`<text x="${(x0 + bw / 2).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle" class="small">${esc(fmt(v))}</text>`);
    });
    parts.push(`<text x="${cx.toFixed(1)}" y="${H - m.b + 18}" text-anchor="middle">${esc(g.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function roundsTable(r: AbResult): string {
  const unit = r.units.throughput;
  const head = ['round', 'side', 'p50', 'p90', 'p99', 'p99.9', 'max', unit, `client ${r.units.cpuPerOp.replace('us', 'µs')}`, `server ${r.units.cpuPerOp.replace('us', 'µs')}`, 'transport'];
  const body: string[] = [];
  const sides: AbSideResult[] = [r.sides.A, r.sides.B];
  for (let i = 0; i < r.options.rounds; i++) {
    for (const s of sides) {
      const x = s.rounds[i];
      if (!x) continue;
      const tr = `${x.transport.kind}${x.published === false ? ' (not published)' : ''}`;
      body.push(
        `<tr class="side${s.side}"><td>${x.round}</td><td>${s.side}</td>` +
          [x.latency.p50, x.latency.p90, x.latency.p99, x.latency.p999, x.latency.max, x.throughput, x.cpu.clientPerOp, x.cpu.serverPerOp]
            .map((v) => `<td class="n">${esc(fmt(v))}</td>`)
            .join('') +
          `<td>${esc(tr)}</td></tr>`,
      );
    }
  }
  return `<table><thead><tr>${head.map((h, i) => `<th${i >= 2 && i < head.length - 1 ? ' class="n"' : ''}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body.join('')}</tbody></table>`;
}

/** The self-contained HTML report. */
export function renderHtml(r: AbResult): string {
  const main = rows(r)
    .map(
      (x) =>
        `<tr><td>${esc(x.label)}</td><td class="n">${esc(x.a)}</td><td class="n">${esc(x.b)}</td>` +
        `<td class="n strong">${esc(x.ratio)}</td><td class="n">${esc(x.spread)}</td></tr>`,
    )
    .join('\n');
  const tpGroups = r.sides.A.rounds.map((a, i) => ({ name: `round ${a.round}`, a: a.throughput, b: r.sides.B.rounds[i]?.throughput ?? 0 }));
  tpGroups.push({ name: 'all rounds', a: r.sides.A.merged.throughput, b: r.sides.B.merged.throughput });
  const cpuGroups = [
    { name: 'client', a: r.sides.A.merged.cpu.clientPerOp, b: r.sides.B.merged.cpu.clientPerOp },
    { name: 'server', a: r.sides.A.merged.cpu.serverPerOp, b: r.sides.B.merged.cpu.serverPerOp },
  ];
  const p50 = r.ratios.p50;
  const tp = r.ratios.throughput;
  const headline =
    `B/A p50 latency <b>${esc(fmtRatio(p50.merged))}</b> (rounds ${esc(fmtRatio(p50.min))} to ${esc(fmtRatio(p50.max))}), ` +
    `p99 <b>${esc(fmtRatio(r.ratios.p99.merged))}</b>, throughput <b>${esc(fmtRatio(tp.merged))}</b> ` +
    `(rounds ${esc(fmtRatio(tp.min))} to ${esc(fmtRatio(tp.max))}).`;
  const env = r.environment;
  const warnings = r.warnings.length
    ? `<div class="warn"><b>Warnings</b><ul>${r.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul></div>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>node-vls A/B: ${esc(describe(r))}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; margin: 24px auto; max-width: 820px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: #5a6474; font-size: 13px; } code { font: 12.5px ui-monospace, Menlo, Consolas, monospace; background: #f2f4f7; padding: 1px 4px; border-radius: 3px; }
.headline { font-size: 15px; background: #f5f8fc; border-left: 4px solid ${COLORS.A}; padding: 8px 12px; margin: 14px 0; }
.warn { background: #fff6e5; border-left: 4px solid #e0a21a; padding: 6px 12px; margin: 12px 0; } .warn ul { margin: 4px 0; padding-left: 20px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e3e7ee; text-align: left; } th { font-weight: 600; background: #f7f8fa; }
td.n, th.n { text-align: right; } td.strong { font-weight: 600; } tr.sideA td:nth-child(2) { color: ${COLORS.A}; font-weight: 600; } tr.sideB td:nth-child(2) { color: ${COLORS.B}; font-weight: 600; }
svg.chart { max-width: 100%; height: auto; display: block; } svg text { font: 12px system-ui, sans-serif; fill: #39424f; }
svg .grid { stroke: #e6e9ef; stroke-width: 1; } svg .axis { font-weight: 600; } svg .small { font-size: 11px; } svg .legend { fill: #fff; stroke: #d5dae2; }
.key { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin: 0 4px 0 10px; }
</style>
</head>
<body>
<h1>node-vls A/B comparison</h1>
<div class="meta">${esc(describe(r))}<br>
server <code>${esc(commandLine(r))}</code>${r.options.builtin ? ' (built-in example)' : ''}<br>
${esc(r.startedAt)} &middot; Node ${esc(env.node)} &middot; node-vls ${esc(env.vls)} &middot; ${env.cpus} &times; ${esc(env.cpuModel)} &middot; load ${esc(env.loadavg.map((l) => l.toFixed(2)).join(' '))}</div>
<div class="headline">${headline}</div>
${warnings}
<div><span class="key" style="background:${COLORS.A}"></span>A: ${esc(r.sides.A.label)}<span class="key" style="background:${COLORS.B}"></span>B: ${esc(r.sides.B.label)}</div>
<h2>Summary (histograms merged over ${r.options.rounds} round${r.options.rounds === 1 ? '' : 's'})</h2>
<table><thead><tr><th></th><th class="n">A plain</th><th class="n">B vls</th><th class="n">B/A</th><th class="n">B/A per round</th></tr></thead>
<tbody>
${main}
</tbody></table>
<h2>Latency by percentile${r.options.workload === 'bulk' ? ' (bulk: write() to its callback)' : ''}</h2>
${percentileChart(r)}
<h2>Throughput</h2>
${barChart('throughput', tpGroups, r.units.throughput)}
<h2>CPU per ${r.units.cpuPerOp.split('/')[1]}</h2>
${barChart('CPU time per operation, user + system', cpuGroups, r.units.cpuPerOp.replace('us', 'µs'))}
<h2>Rounds</h2>
${roundsTable(r)}
<p class="meta">Latency recorded by the client into HdrHistogram (ns, 3 significant digits)${r.options.rate !== null ? ', from the intended send time (open loop, coordinated omission corrected)' : ''}; client CPU from process.cpuUsage(), server CPU from /proc/&lt;pid&gt;/stat of its process tree, over each measured window. Transport: the handle class of each client socket (TCP or SessionHandle). Machine-readable result: <code>vls ab --json</code> (schema <code>${esc(r.schema)}</code>).</p>
</body>
</html>
`;
}
