// The audit log view (admins): GET /api/v1/audit-log, newest first, "Load older entries"
// follows the cursor. Entries are API data: inserted as text only (dom.js).
import * as API from './api.js';
import { $, fmtDate, h, showError } from './dom.js';

const state = { cursor: null, loading: false };

const ACTIONS = {
  'tenant.create': 'Tenant created',
  'tenant.update': 'Tenant changed',
  'user.create': 'User created',
  'user.update': 'User changed',
  'user.delete': 'User deleted',
  'user.password_change': 'Password changed',
  'api_key.create': 'Key created',
  'api_key.update': 'Key changed',
  'api_key.regenerate': 'Key regenerated',
  'api_key.revoke': 'Key revoked',
  'auth.login': 'Signed in',
  'auth.login_failed': 'Sign-in refused',
};

const show = (v) =>
  v === null || v === undefined ? '—' : Array.isArray(v) ? v.join(', ') || '[]' : String(v);

function actor(e) {
  if (e.actor_type === 'master') return 'operator (master key)';
  if (e.actor_type === 'cli') return e.actor_label ?? 'CLI';
  if (e.actor_type === 'system') return 'gateway (first start)';
  return e.actor_label ?? e.actor_id ?? 'unknown';
}

function target(e) {
  const name = e.target_label;
  const kind = { api_key: 'key', user: 'user', tenant: 'tenant' }[e.target_type] ?? e.target_type;
  const id = e.target_id ? e.target_id.slice(0, 8) : '';
  return h(
    'span',
    {},
    `${kind} `,
    name ? h('strong', {}, name) : id,
    name && id ? h('span', { class: 'muted small' }, ` ${id}`) : null,
  );
}

// Fields a creation entry holds that say nothing an auditor needs (ids are in the "On" column).
const QUIET = new Set([
  'id',
  'tenant_id',
  'created_at',
  'updated_at',
  'last_used_at',
  'spend',
  'current_quota_usage',
  'legacy',
]);
const empty = (v) => v === null || v === undefined || (Array.isArray(v) && !v.length);

/** One line per changed field: "quota_limit: 1000 → 5000"; a creation or deletion lists what was set. */
function change(e) {
  const before = e.before ?? {};
  const after = e.after ?? {};
  const whole = e.before === null || e.after === null; // created or deleted: one snapshot
  const snapshot = e.before === null ? after : before;
  const fields = whole
    ? Object.keys(snapshot).filter((f) => !QUIET.has(f) && !empty(snapshot[f]))
    : [...new Set([...Object.keys(before), ...Object.keys(after)])];
  if (!fields.length) return h('span', { class: 'muted' }, '—');
  return h(
    'ul',
    { class: 'changes' },
    fields.map((f) =>
      h(
        'li',
        {},
        h('code', {}, f),
        ': ',
        whole ? show(snapshot[f]) : `${show(before[f])} → ${show(after[f])}`,
      ),
    ),
  );
}

function row(e) {
  const cell = (label, ...content) => h('td', { dataset: { label } }, ...content);
  return h(
    'tr',
    { dataset: { id: e.id, action: e.action } },
    cell('When', h('time', { datetime: e.created_at }, fmtDate(e.created_at))),
    cell('Who', actor(e)),
    cell(
      'Action',
      h('span', { class: `badge audit ${e.action.split('.')[0]}` }, ACTIONS[e.action] ?? e.action),
    ),
    cell('On', target(e)),
    cell('Change', change(e)),
    cell(
      'Request',
      h('span', { class: 'muted small' }, [e.ip, e.request_id].filter(Boolean).join(' · ') || '—'),
    ),
  );
}

export async function loadAudit({ more = false } = {}) {
  if (state.loading) return;
  state.loading = true;
  const body = $('#audit-body');
  body.setAttribute('aria-busy', 'true');
  try {
    const page = await API.auditLog({
      action: $('#audit-action').value || undefined,
      cursor: more ? state.cursor : undefined,
    });
    const rows = page.data.map(row);
    if (more) body.append(...rows);
    else body.replaceChildren(...rows);
    state.cursor = page.next_cursor;
    $('#audit-more').hidden = !state.cursor;
    $('#audit-empty').hidden = body.children.length > 0;
    showError($('#audit-error'), '');
  } catch (err) {
    if (err.status !== 401) showError($('#audit-error'), err.message);
  } finally {
    state.loading = false;
    body.removeAttribute('aria-busy');
  }
}

export function resetAudit() {
  state.cursor = null;
  $('#audit-body').replaceChildren();
}

$('#refresh-audit').addEventListener('click', () => loadAudit());
$('#audit-action').addEventListener('change', () => loadAudit());
$('#audit-more').addEventListener('click', () => loadAudit({ more: true }));
