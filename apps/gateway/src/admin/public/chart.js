// A key's tokens per day as a small inline SVG bar chart (no library), plus the same
// figures as a table for screen readers.
import { fmtInt, fmtUsd, h, s } from './dom.js';

const DAY = 86400000;

/** The `days` calendar days (YYYY-MM-DD, UTC) ending with `to`, plus any day the data holds. */
export function dayAxis(rows, to, days) {
  const end = new Date(to);
  const axis = [];
  for (let i = days - 1; i >= 0; i--) axis.push(new Date(end.getTime() - i * DAY).toISOString().slice(0, 10));
  for (const r of rows) if (!axis.includes(r.day)) axis.push(r.day);
  return axis.sort().slice(-days);
}

const W = 600;
const H = 180;

/**
 * An empty day chart: the svg with grid lines at 0, half and max (labelled with `fmt`), its
 * geometry, and `dayLabel(day, i)` that labels the first, middle and last of `count` days.
 */
function frame({ count, left, max, fmt, attrs }) {
  const pad = { top: 12, right: 8, bottom: 26, left };
  const ih = H - pad.top - pad.bottom;
  const bw = (W - pad.left - pad.right) / count;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, ...attrs });
  const labels = new Set(); // a small integer max would label the half line like the top one
  for (const f of [0, 1, 0.5]) {
    const y = pad.top + ih - f * ih;
    const label = fmt(f * max);
    svg.append(s('line', { x1: pad.left, x2: W - pad.right, y1: y, y2: y, class: 'grid' }));
    if (!labels.has(label))
      svg.append(s('text', { x: pad.left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis' }, label));
    labels.add(label);
  }
  const dayLabel = (day, i) => {
    if (i === 0 || i === count - 1 || i === Math.floor(count / 2))
      svg.append(
        s(
          'text',
          { x: pad.left + i * bw + bw / 2, y: H - 8, 'text-anchor': 'middle', class: 'axis' },
          day.slice(5),
        ),
      );
  };
  return { svg, pad, ih, bw, dayLabel };
}

export function usageChart(rows, to, days = 30) {
  const byDay = new Map(rows.map((r) => [r.day, r]));
  const axis = dayAxis(rows, to, days);
  const values = axis.map((d) => byDay.get(d)?.total_tokens ?? 0);
  const max = Math.max(1, ...values);
  const total = values.reduce((a, b) => a + b, 0);
  const { svg, pad, ih, bw, dayLabel } = frame({
    count: axis.length,
    left: 52,
    max,
    fmt: (v) => fmtInt(Math.round(v)),
    attrs: {
      class: 'chart',
      role: 'img',
      'aria-label': `Tokens per day over the last ${days} days: ${fmtInt(total)} in total, at most ${fmtInt(Math.max(...values))} on one day`,
    },
  });
  axis.forEach((day, i) => {
    const v = values[i];
    const bh = (v / max) * ih;
    const x = pad.left + i * bw;
    const row = byDay.get(day);
    const tip = row
      ? `${day}: ${fmtInt(v)} tokens, ${fmtInt(row.requests)} requests, ${fmtUsd(row.cost_usd)}`
      : `${day}: no usage`;
    svg.append(
      s(
        'rect',
        {
          x: x + bw * 0.15,
          y: pad.top + ih - Math.max(bh, v > 0 ? 2 : 0),
          width: bw * 0.7,
          height: Math.max(bh, v > 0 ? 2 : 0),
          class: v > 0 ? 'bar' : 'bar empty',
          dataset: { day, tokens: String(v) },
        },
        s('title', {}, tip),
      ),
    );
    dayLabel(day, i);
  });

  const used = rows
    .filter((r) => r.total_tokens > 0 || r.requests > 0)
    .sort((a, b) => (a.day < b.day ? 1 : -1));
  const table = h(
    'table',
    { class: 'visually-hidden' },
    h('caption', {}, 'Usage by day'),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { scope: 'col' }, 'Day'),
        h('th', { scope: 'col' }, 'Tokens'),
        h('th', { scope: 'col' }, 'Requests'),
        h('th', { scope: 'col' }, 'Cost'),
      ),
    ),
    h(
      'tbody',
      {},
      used.map((r) =>
        h(
          'tr',
          {},
          h('td', {}, r.day),
          h('td', {}, fmtInt(r.total_tokens)),
          h('td', {}, fmtInt(r.requests)),
          h('td', {}, fmtUsd(r.cost_usd)),
        ),
      ),
    ),
  );
  return h('figure', { class: 'chart-figure' }, svg, table);
}

/** Colours of the stacked series (admin.css .series-0 to -9); the folded rest is .series-other. */
const SERIES_COLOURS = 10;
const colour = (order, id) =>
  id === 'other' || order.indexOf(id) === -1
    ? 'series-other'
    : `series-${order.indexOf(id) % SERIES_COLOURS}`;

/**
 * A tenant's days as stacked bars: one segment per series (model, user or key) a day has,
 * `metric` (total_tokens or cost_usd) high. `rows` are GET /api/v1/usage?split_by=... rows;
 * `series(row)` gives { id, label } (the folded rest: id 'other'). Segments carry their
 * figure in data-value (the browser test adds them up), and the same figures are a table
 * for screen readers.
 */
export function stackedChart({ rows, to, days, metric, title, fmt, series, order }) {
  const axis = dayAxis(rows, to, days);
  const byDay = new Map(axis.map((d) => [d, []]));
  for (const r of rows) byDay.get(r.day)?.push(r);
  const totals = axis.map((d) => byDay.get(d).reduce((n, r) => n + r[metric], 0));
  const max = Math.max(Number.MIN_VALUE, ...totals);
  const sum = totals.reduce((a, b) => a + b, 0);
  const { svg, pad, ih, bw, dayLabel } = frame({
    count: axis.length,
    left: 78,
    max: sum ? max : 0,
    fmt,
    attrs: {
      class: 'chart stacked',
      role: 'img',
      dataset: { metric },
      'aria-label': `${title}: ${fmt(sum)} in total over ${axis.length} days`,
    },
  });
  axis.forEach((day, i) => {
    const x = pad.left + i * bw;
    let y = pad.top + ih;
    const segments = byDay
      .get(day)
      .map((r) => ({ r, ...series(r) }))
      .sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
    for (const seg of segments) {
      const v = seg.r[metric];
      if (!(v > 0)) continue;
      const bh = (v / max) * ih;
      y -= bh;
      svg.append(
        s(
          'rect',
          {
            x: x + bw * 0.15,
            y,
            width: bw * 0.7,
            height: Math.max(bh, 0.5),
            class: `segment ${colour(order, seg.id)}`,
            dataset: { day, series: seg.label, value: String(v) },
          },
          s('title', {}, `${day} · ${seg.label}: ${fmt(v)}`),
        ),
      );
    }
    dayLabel(day, i);
  });
  const table = h(
    'table',
    { class: 'visually-hidden' },
    h('caption', {}, title),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { scope: 'col' }, 'Day'),
        h('th', { scope: 'col' }, 'Series'),
        h('th', { scope: 'col' }, 'Value'),
      ),
    ),
    h(
      'tbody',
      {},
      rows
        .filter((r) => r[metric] > 0)
        .map((r) =>
          h('tr', {}, h('td', {}, r.day), h('td', {}, series(r).label), h('td', {}, fmt(r[metric]))),
        ),
    ),
  );
  return h('figure', { class: 'chart-figure' }, h('figcaption', {}, title), svg, table);
}

/** The series of the stacked charts (`entries` in `order`: { id, label }), with their colour swatches. */
export function seriesLegend(entries) {
  const order = entries.map((e) => e.id);
  return h(
    'ul',
    { class: 'legend', 'aria-label': 'Series' },
    entries.map((e) =>
      h(
        'li',
        { dataset: { series: e.label } },
        h('span', { class: `swatch ${colour(order, e.id)}`, 'aria-hidden': 'true' }),
        e.label,
      ),
    ),
  );
}
