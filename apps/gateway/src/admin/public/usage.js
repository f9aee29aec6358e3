// The usage dashboard (admins): the tenant's ledger in a date range, in totals, per day, by
// model, by user and top keys (GET /api/v1/usage, one call per grouping), and CSV export
// (GET /api/v1/usage?format=csv). API data is inserted as text only (dom.js).
import * as API from './api.js';
import { seriesLegend, stackedChart } from './chart.js';
import { $, fmtInt, fmtUsd, h, showError } from './dom.js';

const DAY = 86400000;
const state = { userLabel: (id) => id, seq: 0 };

/** userLabel(id): how the page names a user (their email). */
export function initUsage({ userLabel }) {
  state.userLabel = userLabel;
}

const isoDay = (t) => new Date(t).toISOString().slice(0, 10);

/** The range as the API takes it: from the first day's 00:00 UTC to the day after the last. */
function range() {
  const from = $('#usage-from').value;
  const to = $('#usage-to').value;
  if (!from || !to) throw new Error('Choose both dates.');
  if (from > to) throw new Error('"From" must not be after "To".');
  return {
    from: `${from}T00:00:00Z`,
    to: new Date(Date.parse(`${to}T00:00:00Z`) + DAY).toISOString(),
    days: Math.round((Date.parse(to) - Date.parse(from)) / DAY) + 1,
  };
}

const report = (groupBy, r, format, splitBy) => {
  const q = new URLSearchParams({ group_by: groupBy, from: r.from, to: r.to });
  if (splitBy) q.set('split_by', splitBy);
  if (format) q.set('format', format);
  return `/api/v1/usage?${q}`;
};

/** What a split row is a segment of: { id, label } (the folded rest: 'other'). */
function seriesOf(splitBy) {
  return (r) => {
    if (r.other) return { id: 'other', label: 'Other' };
    if (splitBy === 'model') return { id: `m:${r.model}`, label: r.model };
    if (splitBy === 'user')
      return { id: `u:${r.user_id}`, label: r.user_id ? state.userLabel(r.user_id) : 'No user (system)' };
    return { id: `k:${r.api_key_id}`, label: r.key_name ?? r.api_key_id };
  };
}

/** Tokens and spend per day, stacked by model, user or key, with one legend for both charts. */
function stackedCharts(split, r) {
  const series = seriesOf(split.split_by);
  const sums = new Map();
  for (const row of split.data) {
    const s = series(row);
    const t = sums.get(s.id) ?? { ...s, cost: 0, tokens: 0 };
    t.cost += row.cost_usd;
    t.tokens += row.total_tokens;
    sums.set(s.id, t);
  }
  const entries = [...sums.values()].sort(
    (a, b) => (a.id === 'other') - (b.id === 'other') || b.cost - a.cost || b.tokens - a.tokens,
  );
  const order = entries.map((e) => e.id);
  const common = {
    rows: split.data,
    to: new Date(Date.parse(r.to) - DAY).toISOString(),
    days: r.days,
    series,
    order,
  };
  return h(
    'section',
    {
      id: 'usage-stacked',
      'aria-label': `Per day, by ${split.split_by}`,
      dataset: { split: split.split_by },
    },
    entries.length ? seriesLegend(entries) : null,
    h(
      'div',
      { class: 'charts' },
      stackedChart({
        ...common,
        metric: 'total_tokens',
        title: `Tokens per day by ${split.split_by}`,
        fmt: (v) => fmtInt(Math.round(v)),
      }),
      stackedChart({
        ...common,
        metric: 'cost_usd',
        title: `Spend per day by ${split.split_by}`,
        fmt: fmtUsd,
      }),
    ),
  );
}

function table(caption, label, rows, name) {
  return h(
    'table',
    { class: 'usage-table', dataset: { group: label } },
    h('caption', {}, caption),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { scope: 'col' }, label),
        h('th', { scope: 'col' }, 'Requests'),
        h('th', { scope: 'col' }, 'Tokens'),
        h('th', { scope: 'col' }, 'Spend'),
      ),
    ),
    h(
      'tbody',
      {},
      rows.length
        ? rows.map((r) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, name(r)),
              h('td', {}, fmtInt(r.requests)),
              h('td', {}, fmtInt(r.total_tokens)),
              h('td', {}, fmtUsd(r.cost_usd)),
            ),
          )
        : h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No usage in this range.')),
    ),
  );
}

/** The reasons of GET /api/v1/usage/refusals, in the page's order. */
const REFUSALS = {
  token_quota: 'Token quota used up',
  budget: 'Budget used up',
  rpm: 'Requests per minute',
  tpm: 'Tokens per minute',
  model_not_allowed: 'Model not allowed',
  key_expired: 'Key expired',
  key_revoked: 'Key revoked',
  owner_disabled: 'Owner or tenant disabled',
};

/** Refused requests per reason over the range, and per day stacked by reason. */
function refusalsSection(refusals, r) {
  const reasons = Object.keys(REFUSALS);
  const label = (reason) => REFUSALS[reason] ?? reason;
  const total = Object.values(refusals.totals).reduce((a, b) => a + b, 0);
  const used = reasons.filter((x) => refusals.totals[x] > 0);
  return h(
    'section',
    { id: 'usage-refusals', 'aria-labelledby': 'usage-refusals-title' },
    h('h2', { id: 'usage-refusals-title' }, `Refused requests: ${fmtInt(total)}`),
    h(
      'p',
      { class: 'muted' },
      "Requests the gateway refused for a limit, a model or a key (not the providers' errors), per day.",
    ),
    h(
      'div',
      { class: 'usage-grid' },
      h(
        'table',
        { class: 'usage-table', dataset: { group: 'Refusals' } },
        h('caption', {}, 'By reason'),
        h(
          'thead',
          {},
          h('tr', {}, h('th', { scope: 'col' }, 'Reason'), h('th', { scope: 'col' }, 'Refused')),
        ),
        h(
          'tbody',
          {},
          used.length
            ? used.map((x) =>
                h(
                  'tr',
                  { dataset: { reason: x } },
                  h(
                    'th',
                    { scope: 'row' },
                    h('span', { class: `swatch series-${reasons.indexOf(x)}`, 'aria-hidden': 'true' }),
                    label(x),
                  ),
                  h('td', {}, fmtInt(refusals.totals[x])),
                ),
              )
            : h('tr', {}, h('td', { colspan: 2, class: 'muted' }, 'None in this range.')),
        ),
      ),
      used.length
        ? stackedChart({
            rows: refusals.data,
            to: new Date(Date.parse(r.to) - DAY).toISOString(),
            days: r.days,
            metric: 'count',
            title: 'Refused per day by reason',
            fmt: (v) => fmtInt(Math.round(v)),
            series: (row) => ({ id: row.reason, label: label(row.reason) }),
            order: reasons,
          })
        : null,
    ),
  );
}

const PERIOD = { none: 'in total (no reset)', daily: 'today', monthly: 'this month' };

/** One limit as a bar: "used / limit", or "unlimited" (no bar). */
function limitBar(name, key, used, limit, fmt) {
  const text =
    used === null
      ? 'unknown (quota store unreachable)'
      : limit === null
        ? `${fmt(used)} (unlimited)`
        : `${fmt(used)} / ${fmt(limit)}`;
  const pct = limit ? Math.min(100, Math.round(((used ?? 0) / limit) * 100)) : null;
  return h(
    'div',
    { class: 'stat limit', dataset: { limit: key } },
    h('dt', {}, name),
    h(
      'dd',
      {},
      h('span', { class: 'limit-text' }, text),
      pct === null
        ? null
        : h('meter', {
            min: 0,
            max: limit,
            value: Math.min(used ?? 0, limit),
            high: limit * 0.8,
            optimum: 0,
            'aria-label': `${name}: ${pct}% used`,
          }),
      pct === null ? null : h('span', { class: 'muted' }, ` ${pct}%`),
    ),
  );
}

/** The tenant's current reset period against its limits (GET /api/v1/usage/limits). */
function limitsSection(l) {
  const p = l.current_period;
  const resets = p.period_end ? `, resets ${new Date(p.period_end).toLocaleString()}` : '';
  return h(
    'section',
    { id: 'usage-limits', 'aria-labelledby': 'usage-limits-title' },
    h('h2', { id: 'usage-limits-title' }, `Your tenant's limits ${PERIOD[p.period] ?? ''}`),
    h(
      'p',
      { class: 'muted' },
      `All keys of ${l.name} together, counted live (requests in flight included)${resets}.`,
    ),
    h(
      'dl',
      { class: 'limits' },
      limitBar('Tokens', 'tokens', p.tokens, p.quota_limit, fmtInt),
      limitBar('Spend', 'spend', p.spend_usd, p.max_budget, fmtUsd),
      h(
        'div',
        { class: 'stat limit', dataset: { limit: 'tpm' } },
        h('dt', {}, 'Tokens per minute'),
        h('dd', {}, l.rate_limit_tpm === null ? 'unlimited' : `at most ${fmtInt(l.rate_limit_tpm)}`),
      ),
    ),
  );
}

const WHY = { quota: 'token quota used up', budget: 'budget used up', expired: 'expired' };
const against = (used, max, fmt) => (max === null ? `${fmt(used)} / ∞` : `${fmt(used)} / ${fmt(max)}`);

/** Keys refusing requests now (current period against their limits), at most 10; the keys page has them all. */
function exhaustedTable(page) {
  return h(
    'table',
    { class: 'usage-table', id: 'usage-exhausted', dataset: { group: 'Exhausted' } },
    h('caption', {}, `Keys refusing requests now: ${fmtInt(page.total)}`),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { scope: 'col' }, 'Key'),
        h('th', { scope: 'col' }, 'Why'),
        h('th', { scope: 'col' }, 'Tokens this period'),
        h('th', { scope: 'col' }, 'Spend this period'),
      ),
    ),
    h(
      'tbody',
      {},
      page.data.length
        ? page.data.map((k) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, k.name),
              h('td', {}, k.exhausted.map((w) => WHY[w] ?? w).join(', ')),
              h('td', {}, against(k.period.tokens, k.quota_limit, fmtInt)),
              h('td', {}, against(k.period.spend, k.max_budget, fmtUsd)),
            ),
          )
        : h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'None: every key has room left.')),
    ),
  );
}

export async function loadUsage() {
  if (!$('#usage-from').value) {
    const today = Date.now();
    $('#usage-to').value = isoDay(today);
    $('#usage-from').value = isoDay(today - 29 * DAY);
  }
  let r;
  try {
    r = range();
  } catch (err) {
    return showError($('#usage-view-error'), err.message);
  }
  const seq = ++state.seq;
  const body = $('#usage-dashboard');
  body.setAttribute('aria-busy', 'true');
  try {
    const range = new URLSearchParams({ from: r.from, to: r.to });
    const [limits, days, split, refusals, models, users, keys, refusing] = await Promise.all([
      API.api('GET', '/api/v1/usage/limits'),
      API.api('GET', report('day', r)),
      API.api('GET', report('day', r, undefined, $('#usage-stack').value)),
      API.api('GET', `/api/v1/usage/refusals?${range}`),
      ...['model', 'user', 'key'].map((g) => API.api('GET', report(g, r))),
      // The current period against the keys' limits: the keys that refuse requests now.
      API.listKeys(10, 0, { status: 'exhausted', sort: 'usage' }),
    ]);
    if (seq !== state.seq) return;
    const t = days.totals;
    const stat = (label, value, key) =>
      h('div', { class: 'stat', dataset: { stat: key } }, h('dt', {}, label), h('dd', {}, value));
    body.replaceChildren(
      limitsSection(limits),
      h('h2', {}, 'In the range'),
      h(
        'dl',
        { class: 'stats', id: 'usage-totals' },
        stat('Requests', fmtInt(t.requests), 'requests'),
        stat('Prompt tokens', fmtInt(t.prompt_tokens), 'prompt_tokens'),
        stat('Completion tokens', fmtInt(t.completion_tokens), 'completion_tokens'),
        stat('Tokens', fmtInt(t.total_tokens), 'total_tokens'),
        // Of the prompt tokens: written to and read from a provider's prompt cache (own prices).
        stat('Cache writes', fmtInt(t.cache_write_tokens ?? 0), 'cache_write_tokens'),
        stat('Cache reads', fmtInt(t.cache_read_tokens ?? 0), 'cache_read_tokens'),
        stat('Spend', fmtUsd(t.cost_usd), 'cost_usd'),
      ),
      stackedCharts(split, r),
      h(
        'div',
        { class: 'usage-grid' },
        table('By model', 'Model', models.data, (x) => x.model),
        table('By user', 'User', users.data, (x) => (x.user_id ? state.userLabel(x.user_id) : '—')),
        table('Top keys', 'Key', keys.data.slice(0, 10), (x) => x.key_name ?? x.api_key_id ?? '—'),
      ),
      exhaustedTable(refusing),
      refusalsSection(refusals, r),
    );
    showError($('#usage-view-error'), '');
  } catch (err) {
    if (err.status !== 401 && seq === state.seq) showError($('#usage-view-error'), err.message);
  } finally {
    body.removeAttribute('aria-busy');
  }
}

/** The CSV comes with the JWT (a plain link could not send it), then is saved from a blob. */
async function downloadCsv() {
  let r;
  try {
    r = range();
  } catch (err) {
    return showError($('#usage-view-error'), err.message);
  }
  const group = $('#usage-csv-group').value;
  try {
    const res = await fetch(report(group, r, 'csv'), {
      headers: { Authorization: `Bearer ${API.session.token}`, Accept: 'text/csv' },
      credentials: 'omit',
      cache: 'no-store',
    });
    if (!res.ok) {
      const data = await res.json().catch(() => null);
      throw new Error(data?.error?.message ?? `${res.status} ${res.statusText}`);
    }
    const url = URL.createObjectURL(await res.blob());
    const a = h('a', {
      href: url,
      download: `usage-${group}-${r.from.slice(0, 10)}-${isoDay(Date.parse(r.to) - DAY)}.csv`,
    });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    showError($('#usage-view-error'), err.message);
  }
}

$('#usage-range').addEventListener('submit', (e) => {
  e.preventDefault();
  loadUsage();
});
$('#usage-csv').addEventListener('click', downloadCsv);
$('#usage-stack').addEventListener('change', () => loadUsage());
