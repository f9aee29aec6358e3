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

export function usageChart(rows, to, days = 30) {
  const byDay = new Map(rows.map((r) => [r.day, r]));
  const axis = dayAxis(rows, to, days);
  const values = axis.map((d) => byDay.get(d)?.total_tokens ?? 0);
  const max = Math.max(1, ...values);
  const W = 600;
  const H = 180;
  const pad = { top: 12, right: 8, bottom: 26, left: 52 };
  const iw = W - pad.left - pad.right;
  const ih = H - pad.top - pad.bottom;
  const bw = iw / axis.length;
  const total = values.reduce((a, b) => a + b, 0);

  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    role: 'img',
    'aria-label': `Tokens per day over the last ${days} days: ${fmtInt(total)} in total, at most ${fmtInt(Math.max(...values))} on one day`,
  });
  // Grid lines at 0, half and max.
  for (const f of [0, 0.5, 1]) {
    const y = pad.top + ih - f * ih;
    svg.append(
      s('line', { x1: pad.left, x2: W - pad.right, y1: y, y2: y, class: 'grid' }),
      s(
        'text',
        { x: pad.left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis' },
        fmtInt(Math.round(f * max)),
      ),
    );
  }
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
    if (i === 0 || i === axis.length - 1 || i === Math.floor(axis.length / 2)) {
      svg.append(
        s('text', { x: x + bw / 2, y: H - 8, 'text-anchor': 'middle', class: 'axis' }, day.slice(5)),
      );
    }
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
