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
  return t.setup || t.title.split(':')[0];
}

function renderBenchmarkMd(b) {
  const lines = [`### ${b.title}`, ''];
  if (b.description) lines.push(`${b.description}.`, '');
  const first = b.tables[0];
  if (!first) return lines.join('\n');
  const ratioKeys = [];
  for (const t of b.tables)
    for (const r of t.ratios) if (!ratioKeys.includes(`${r.metric}/${r.vs}`)) ratioKeys.push(`${r.metric}/${r.vs}`);
  const ratioLabel = (k) => {
    const [m, vs] = k.split('/');
    const metric = first.metrics.find((x) => x.id === m);
    const v = first.variants.find((x) => x.id === vs);
    return `${metric ? metric.short || m : m} vs ${v ? v.short || vs : vs}`;
  };
  const shown = first.metrics.filter((m) => !m.hidden);
  const head = ['setup', 'variant', ...shown.map((m) => m.label), ...ratioKeys.map(ratioLabel)];
  lines.push(`| ${head.join(' | ')} |`, `| ${head.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`);
  for (const t of b.tables) {
    for (const v of t.variants) {
      const row = [groupName(t), v.label];
      for (const m of shown) row.push(cell(t.values[v.id] && t.values[v.id][m.id], m.decimals));
      for (const k of ratioKeys) {
        const [m, vs] = k.split('/');
        const r = t.ratios.find((x) => x.variant === v.id && x.metric === m && x.vs === vs);
        row.push(r ? `${num(r.median, 2)}x` : '');
      }
      lines.push(`| ${row.join(' | ')} |`);
    }
  }
  lines.push('');
  for (const t of b.tables)
    for (const f of t.failures || [])
      lines.push(`Failed run (left out): ${t.id} ${f.variant} round ${f.round + 1}: ${f.error.split('\n')[0]}`, '');
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

const OPS = { '<=': '≤', '<': '<', '>=': '≥', '>': '>' };

/**
 * One row per (table, layer variant, metric) that has targets: the plain baseline, Unix where
 * measured, the layer, and each target with its verdict. The tables' first variant is the plain
 * baseline by construction (TCP, or the plain client for passthrough).
 */
function summaryRows(result, variants = ['layer']) {
  const rows = [];
  for (const b of result.benchmarks) {
    for (const chk of b.checks) {
      if (!variants.includes(chk.variant)) continue;
      const t = b.tables.find((x) => x.id === chk.table);
      if (!t) continue;
      const metricId = chk.vs ? chk.metric : chk.metric;
      const key = `${chk.table}|${chk.variant}|${metricId}`;
      let row = rows.find((r) => r.key === key);
      if (!row) {
        const metric = t.metrics.find((m) => m.id === metricId);
        const base = t.variants[0];
        const unix = t.variants.find((v) => v.id === 'unix');
        const val = (v) => (v && t.values[v.id] ? t.values[v.id][metricId] : undefined);
        row = {
          key,
          benchmark: b.name,
          setup: groupName(t),
          measure: metric ? metric.label : null,
          decimals: metric ? metric.decimals : 2,
          base: val(base),
          unix: val(unix),
          layer: val(t.variants.find((v) => v.id === chk.variant)),
          targets: [],
        };
        rows.push(row);
      }
      row.targets.push(chk);
    }
  }
  return rows;
}

function renderSummaryMd(result) {
  const lines = [
    '| benchmark | setup | measure | plain Node | Unix | layer | layer vs target | met |',
    '| --- | --- | --- | ---: | ---: | ---: | --- | --- |',
  ];
  for (const r of summaryRows(result)) {
    const tg = r.targets
      .map((c) => {
        const u = c.unit === undefined ? 'x' : c.unit;
        const d = c.decimals === undefined ? 2 : c.decimals;
        const vs = c.vs ? ` ${c.vs === 'unix' ? 'Unix' : c.vs === 'plain' ? 'plain' : 'TCP'}` : '';
        return `${num(c.value, d)}${u} (${OPS[c.op] || c.op} ${c.limit}${u}${vs})`;
      })
      .join('; ');
    const met = r.targets.map((c) => (c.pass ? 'yes' : '**no**')).join(', ');
    const measure = r.measure || r.targets[0].label.replace(/^[^:]*: /, '');
    lines.push(
      `| ${r.benchmark} | ${r.setup} | ${measure} | ${r.measure ? cell(r.base, r.decimals) : ''} | ${r.measure ? cell(r.unix, r.decimals) : ''} | ${r.measure ? cell(r.layer, r.decimals) : ''} | ${tg} | ${met} |`,
    );
  }
  return lines.join('\n') + '\n';
}

function renderMarkdown(result) {
  const m = result.machine;
  const head = [
    `## node-vls benchmarks`,
    '',
    `\`${result.command}\`, ${m.date}: Node ${m.node}, ${m.cpus} CPUs (${m.cpuModel}), Linux ${m.kernel}, commit ${m.commit}${m.dirty ? ' (modified)' : ''}; ` +
      `${Math.round(result.seconds)} s. Median of the runs (min-max); ratios are medians of per-round ratios.`,
    '',
    '',
  ];
  return (
    head.join('\n') +
    '### Targets (the layer row of each benchmark)\n\n' +
    renderSummaryMd(result) +
    '\n' +
    result.benchmarks.map(renderBenchmarkMd).join('\n') +
    `\nTargets met: ${result.summary.passed} of ${result.summary.targets}.\n`
  );
}

module.exports = { renderMarkdown, renderSummaryMd, summaryRows };
