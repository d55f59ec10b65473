'use strict';
// Renders a suite result (bench/results/latest.json) as Markdown tables, one per benchmark:
// a row per placement and variant, the median of the runs with their min-max, the ratios against
// the baseline, then the targets.

function num(x, d) {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : '-';
}

function cell(s, d) {
  if (!s) return '-';
  if (s.runs.length === 1 || s.min === s.max) return num(s.median, d);
  return `${num(s.median, d)} (${num(s.min, d)}-${num(s.max, d)})`;
}

function groupName(t) {
  // "same CPU (both processes taskset -c 0): 64 B round trip, ..." -> "same CPU (both processes taskset -c 0)"
  return t.title.split(':')[0];
}

function renderBenchmarkMd(b) {
  const lines = [`### ${b.title}`, ''];
  if (b.description) lines.push(`${b.description}.`, '');
  const first = b.tables[0];
  if (!first) return lines.join('\n');
  const ratioKeys = [];
  for (const t of b.tables) for (const r of t.ratios) if (!ratioKeys.includes(`${r.metric}/${r.vs}`)) ratioKeys.push(`${r.metric}/${r.vs}`);
  const ratioLabel = (k) => {
    const [m, vs] = k.split('/');
    const metric = first.metrics.find((x) => x.id === m);
    const v = first.variants.find((x) => x.id === vs);
    return `${metric ? metric.short || m : m} vs ${v ? v.short || vs : vs}`;
  };
  const head = ['placement / setup', 'variant', ...first.metrics.map((m) => m.label), ...ratioKeys.map(ratioLabel)];
  lines.push(`| ${head.join(' | ')} |`, `| ${head.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`);
  for (const t of b.tables) {
    for (const v of t.variants) {
      const row = [groupName(t), v.label];
      for (const m of first.metrics) row.push(cell(t.values[v.id] && t.values[v.id][m.id], m.decimals));
      for (const k of ratioKeys) {
        const [m, vs] = k.split('/');
        const r = t.ratios.find((x) => x.variant === v.id && x.metric === m && x.vs === vs);
        row.push(r ? `${num(r.median, 2)}x` : '');
      }
      lines.push(`| ${row.join(' | ')} |`);
    }
  }
  lines.push('');
  if (b.checks.length) {
    lines.push('Targets:', '');
    for (const c of b.checks) {
      const u = c.unit === undefined ? 'x' : c.unit;
      const d = c.decimals === undefined ? 2 : c.decimals;
      lines.push(`- ${c.pass ? 'pass' : '**FAIL**'}: ${c.label} ${c.op} ${c.limit}${u}: ${num(c.value, d)}${u}`);
    }
    lines.push('');
  }
  for (const n of b.notes || []) lines.push(`Note: ${n}`, '');
  return lines.join('\n');
}

function renderMarkdown(result) {
  const m = result.machine;
  const head = [
    `## node-vls benchmarks`,
    '',
    `\`${result.command}\`, ${m.date}: Node ${m.node}, ${m.cpus} CPUs (${m.cpuModel}), Linux ${m.kernel}, commit ${m.commit}${m.dirty ? ' (modified)' : ''}; ` +
      `${Math.round(result.seconds)} s. Median of the runs (min-max); ratios are medians of per-round ratios.`,
    '',
  ];
  return head.join('\n') + result.benchmarks.map(renderBenchmarkMd).join('\n') + `\nTargets met: ${result.summary.passed} of ${result.summary.targets}.\n`;
}

module.exports = { renderMarkdown };
