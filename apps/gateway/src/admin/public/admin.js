// The admin page: sign in, list keys, generate / regenerate / delete, a key's usage chart;
// admins also read the audit log (audit.js).
// Data from the API is only ever inserted as text (see dom.js).
import * as API from './api.js';
import { loadAudit, resetAudit } from './audit.js';
import { loadTenants, resetTenants } from './tenants.js';
import { initUsage, loadUsage as loadUsageView } from './usage.js';
import { initUsers, loadUsers, resetUsers } from './users.js';
import { usageChart } from './chart.js';
import {
  $,
  copyText,
  fmtDate,
  fmtDay,
  fmtInt,
  fmtRelative,
  fmtUsd,
  h,
  openDialog,
  readNumber,
  showError,
} from './dom.js';

const PAGE = 20;
const state = { offset: 0, total: 0, keys: [], users: new Map(), seq: 0 };

const views = {
  login: $('#login-view'),
  keys: $('#keys-view'),
  users: $('#users-view'),
  usage: $('#usage-view'),
  tenants: $('#tenants-view'),
  audit: $('#audit-view'),
};

/** Which pages each role has (the API refuses the others: members get 403 on every admin read). */
const TABS = {
  admin: ['keys', 'users', 'usage', 'audit'],
  operator: ['tenants', 'audit'],
};

const isAdmin = () => API.session.user?.role === 'admin';

function show(view) {
  for (const [name, el] of Object.entries(views)) el.hidden = view !== name;
  const user = API.session.user;
  $('#who').hidden = view === 'login';
  $('#who-text').textContent = user ? `${user.email} (${user.role})` : '';
  // Members have no admin pages (the API answers 403): no tab to a page they cannot read.
  const tabs = TABS[user?.role] ?? [];
  $('#views-nav').hidden = view === 'login' || tabs.length === 0;
  for (const tab of document.querySelectorAll('#views-nav .tab')) {
    tab.hidden = !tabs.includes(tab.dataset.view);
    if (tab.dataset.view === view) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
}

$('#nav-keys').addEventListener('click', () => {
  show('keys');
  $('#keys-title').focus();
  loadKeys();
});
$('#nav-users').addEventListener('click', () => {
  show('users');
  $('#users-title').focus();
  loadUsers();
});
$('#nav-usage').addEventListener('click', () => {
  show('usage');
  $('#usage-view-title').focus();
  loadUsageView();
});
initUsage({
  userLabel: (id) => {
    const u = state.users.get(id);
    return u ? (u.role === 'system' ? 'system' : u.email) : id.slice(0, 8);
  },
});
$('#nav-tenants').addEventListener('click', () => {
  show('tenants');
  $('#tenants-title').focus();
  loadTenants();
});
$('#nav-audit').addEventListener('click', () => {
  show('audit');
  $('#audit-title').focus();
  loadAudit();
});

// ---- sign in / out -------------------------------------------------------------------

function showLogin(message) {
  show('login');
  showError($('#login-error'), message);
  $('#login-email').focus();
}

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const email = $('#login-email').value.trim();
  const password = $('#login-password').value;
  if (!email || !password) return showError($('#login-error'), 'Enter your email and password.');
  const button = $('#login-submit');
  button.disabled = true;
  try {
    const res = await API.login(email, password, $('#login-tenant').value.trim());
    API.session.save(res.access_token, res.user);
    $('#login-password').value = '';
    showError($('#login-error'), '');
    await enter();
  } catch (err) {
    showError($('#login-error'), err.message);
    $('#login-password').select();
  } finally {
    button.disabled = false;
  }
});

function logout(message) {
  API.session.clear();
  state.keys = [];
  state.users.clear();
  state.offset = 0;
  $('#keys-filters').reset();
  $('#keys-body').replaceChildren();
  resetAudit();
  resetUsers();
  resetTenants();
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  showLogin(message);
}

$('#logout').addEventListener('click', () => logout());
API.setUnauthorizedHandler(() => logout('Your session has ended. Sign in again.'));

$('#master-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const key = $('#master-key').value;
  if (!key) return showError($('#master-error'), 'Paste the master key.');
  const button = $('#master-submit');
  button.disabled = true;
  API.session.operator(key);
  try {
    await API.api('GET', '/api/v1/tenants?limit=1');
    $('#master-key').value = '';
    showError($('#master-error'), '');
    await enter();
  } catch (err) {
    API.session.clear();
    show('login');
    showError($('#login-error'), '');
    showError(
      $('#master-error'),
      err.status === 401 || err.status === 403 ? 'That is not the master key.' : err.message,
    );
    $('#master-key').select();
  } finally {
    button.disabled = false;
  }
});

async function enter() {
  if (API.session.user?.role === 'operator') {
    show('tenants');
    $('#tenants-title').focus();
    return loadTenants();
  }
  show('keys');
  $('#scope-note').textContent = isAdmin()
    ? "You are an admin: these are all of your tenant's keys."
    : 'These are your keys.';
  $('#keys-title').focus();
  if (isAdmin()) await reloadUsers();
  else fillOwnerFilter();
  await loadKeys();
}

async function reloadUsers() {
  try {
    const all = await API.listAllUsers();
    state.users.clear();
    for (const u of all) state.users.set(u.id, u);
  } catch (err) {
    showError($('#keys-error'), `Could not load users: ${err.message}`);
  }
  const owner = $('#keys-owner').value;
  fillOwnerFilter();
  $('#keys-owner').value = state.users.has(owner) ? owner : '';
}

initUsers({
  changed: reloadUsers,
  showKeysOf: (user) => {
    $('#keys-owner').value = user.id;
    $('#keys-search').value = '';
    $('#keys-status').value = 'current';
    state.offset = 0;
    show('keys');
    $('#keys-title').focus();
    loadKeys();
  },
});

function fillOwnerFilter() {
  const field = $('#keys-owner-field');
  field.hidden = !isAdmin() || state.users.size === 0;
  const select = $('#keys-owner');
  const users = [...state.users.values()].sort((a, b) => a.email.localeCompare(b.email));
  select.replaceChildren(
    h('option', { value: '' }, 'Anyone'),
    ...users.map((u) => h('option', { value: u.id }, u.role === 'system' ? 'system' : u.email)),
  );
}

/** The toolbar's search, filters and order, as GET /api/v1/api-keys query parameters. */
function keyQuery() {
  const sort = $('#keys-sort').value;
  return {
    q: $('#keys-search').value.trim(),
    status: $('#keys-status').value,
    owner_id: $('#keys-owner-field').hidden ? '' : $('#keys-owner').value,
    sort,
    order: sort === 'name' ? 'asc' : 'desc',
  };
}

// ---- keys table ----------------------------------------------------------------------

async function loadKeys() {
  // Only the answer to the latest request is shown (typing sends several).
  const seq = ++state.seq;
  try {
    const page = await API.listKeys(PAGE, state.offset, keyQuery());
    if (seq !== state.seq) return;
    if (!page.data.length && state.offset > 0 && page.total > 0) {
      state.offset = Math.max(0, state.offset - PAGE);
      return loadKeys();
    }
    state.keys = page.data;
    state.total = page.total;
    showError($('#keys-error'), '');
    renderKeys();
  } catch (err) {
    if (err.status !== 401) showError($('#keys-error'), err.message);
  }
}

function ownerLabel(k) {
  const me = API.session.user;
  if (k.user_id && me && k.user_id === me.id) return 'you';
  if (!k.user_id) return '—';
  const u = state.users.get(k.user_id);
  if (!u) return k.user_id.slice(0, 8);
  return u.role === 'system' ? 'system' : u.email;
}

function meter(used, limit, fmt, label) {
  if (limit === null || limit === undefined) {
    return h('span', { class: 'usage' }, fmt(used), h('span', { class: 'muted' }, ' / ∞'));
  }
  const ratio = limit > 0 ? Math.min(1, used / limit) : 1;
  return h(
    'span',
    { class: 'usage' },
    fmt(used),
    h('span', { class: 'muted' }, ` / ${fmt(limit)}`),
    h('meter', {
      min: 0,
      max: 1,
      low: 0.75,
      high: 0.9,
      optimum: 0,
      value: ratio.toFixed(4),
      'aria-label': `${label}: ${Math.round(ratio * 100)}% used`,
      title: `${Math.round(ratio * 100)}% used`,
    }),
  );
}

const PERIOD_WORD = { daily: 'today', monthly: 'this month', none: 'in total' };

/** Why the key refuses requests now, and what would let it through again. */
function exhaustedNote(k) {
  if (!k.exhausted?.length) return null;
  const resets = k.period?.resets_at ? `wait for the reset (${fmtDate(k.period.resets_at)})` : null;
  const lines = k.exhausted.map((why) => {
    if (why === 'expired') return `Expired ${fmtDate(k.expires_at)}: edit the key to extend its expiry.`;
    if (why === 'quota')
      return `Token quota used up (${fmtInt(k.period.tokens)} of ${fmtInt(k.quota_limit)} ${PERIOD_WORD[k.quota_period]}): raise the quota${resets ? `, or ${resets}` : ''}.`;
    return `Budget used up (${fmtUsd(k.period.spend)} of ${fmtUsd(k.max_budget)} ${PERIOD_WORD[k.quota_period]}): raise the budget${resets ? `, or ${resets}` : ''}.`;
  });
  return h(
    'ul',
    { class: 'exhausted-why small' },
    lines.map((l) => h('li', {}, l)),
  );
}

function keyRow(k) {
  const cell = (label, ...content) => h('td', { dataset: { label } }, ...content);
  const active = k.status === 'active';
  const exhausted = k.status !== 'revoked' && k.exhausted?.length > 0;
  const status = h(
    'span',
    { class: `badge ${exhausted ? 'exhausted' : k.status}` },
    exhausted && k.status === 'active' ? 'exhausted' : k.status,
  );
  const grace = k.previous_key_valid_until
    ? h('div', { class: 'muted small' }, `old key valid until ${fmtDate(k.previous_key_valid_until)}`)
    : null;
  const expiry =
    k.expires_at && active
      ? h('div', { class: 'muted small', title: fmtDate(k.expires_at) }, `expires ${fmtDay(k.expires_at)}`)
      : null;
  const legacy = k.legacy
    ? h(
        'span',
        {
          class: 'badge legacy',
          title:
            'Legacy key still waiting for its lookup hash: it upgrades on its next use (or regenerate it)',
        },
        'legacy',
        h('span', { class: 'visually-hidden' }, ': waiting for its lookup hash'),
      )
    : null;
  const models = k.allowed_models?.length
    ? h(
        'ul',
        { class: 'models' },
        k.allowed_models.map((m) => h('li', {}, m)),
      )
    : h('span', { class: 'muted' }, 'all');
  // Endpoint scopes (from permissions); legacy names that are not scopes restrict nothing.
  const scopes = k.scopes?.length
    ? h('div', { class: 'muted small' }, `endpoints: ${k.scopes.join(', ')}`)
    : null;
  const lastUsed = k.last_used_at
    ? h('time', { datetime: k.last_used_at, title: fmtDate(k.last_used_at) }, fmtRelative(k.last_used_at))
    : h('span', { class: 'muted' }, 'never');
  const btn = (text, action, extra = {}) =>
    h(
      'button',
      {
        type: 'button',
        class: extra.class ?? 'secondary small',
        dataset: { action, id: k.id },
        'aria-label': `${text} ${k.name}`,
      },
      text,
    );
  return h(
    'tr',
    { dataset: { id: k.id }, class: active ? null : 'inactive' },
    h(
      'th',
      { scope: 'row', dataset: { label: 'Name' } },
      h('span', { class: 'key-name' }, k.name),
      ' ',
      legacy,
    ),
    cell('Prefix', h('code', { class: 'prefix' }, `${k.key_prefix}…`)),
    cell('Owner', ownerLabel(k)),
    cell(
      'Tokens / quota',
      meter(k.period?.tokens ?? k.current_quota_usage, k.quota_limit, fmtInt, 'Token quota'),
      k.quota_period !== 'none' ? h('div', { class: 'muted small' }, PERIOD_WORD[k.quota_period]) : null,
    ),
    cell('Spend / budget', meter(k.period?.spend ?? k.spend, k.max_budget, fmtUsd, 'Budget')),
    cell(
      'RPM / TPM',
      k.rate_limit_rpm === null ? h('span', { class: 'muted' }, '∞') : fmtInt(k.rate_limit_rpm),
      h(
        'div',
        { class: 'muted small' },
        k.rate_limit_tpm === null || k.rate_limit_tpm === undefined
          ? '∞ tpm'
          : `${fmtInt(k.rate_limit_tpm)} tpm`,
      ),
    ),
    cell('Models', models, scopes),
    cell('Last used', lastUsed),
    cell('Status', status, grace, expiry, exhaustedNote(k)),
    h(
      'td',
      { class: 'row-actions', dataset: { label: 'Actions' } },
      h(
        'div',
        { class: 'row-actions-inner' },
        btn('Usage', 'usage'),
        k.status !== 'revoked' ? btn('Edit', 'edit') : null,
        active ? btn('Regenerate', 'regenerate') : null,
        active ? btn('Delete', 'delete', { class: 'danger small' }) : null,
      ),
    ),
  );
}

function renderKeys() {
  // Re-rendering replaces the buttons: keep the keyboard focus on the same action of the same key.
  const had = document.activeElement?.closest?.('#keys-body button[data-id]');
  $('#keys-body').replaceChildren(...state.keys.map(keyRow));
  if (had) focusRowAction(had.dataset.id, had.dataset.action)().focus();
  const filtered = Object.entries(keyQuery()).some(
    ([k, v]) => v && !(k === 'status' && v === 'current') && k !== 'sort' && k !== 'order',
  );
  $('#keys-empty').hidden = state.total > 0 || filtered;
  $('#keys-none').hidden = state.total > 0 || !filtered;
  $('#keys-table').hidden = state.total === 0;
  const from = state.total ? state.offset + 1 : 0;
  const to = state.offset + state.keys.length;
  $('#page-info').textContent = `${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(state.total)}`;
  $('#prev-page').disabled = state.offset === 0;
  $('#next-page').disabled = to >= state.total;
  $('.pager').hidden = state.total <= PAGE;
  const legacy = state.keys.filter((k) => k.legacy && k.status === 'active').length;
  const note = $('#legacy-note');
  note.hidden = legacy === 0;
  note.textContent = legacy
    ? `${legacy} legacy key${legacy === 1 ? '' : 's'} on this page still wait${legacy === 1 ? 's' : ''} for a lookup hash. ` +
      'They work, by a slower check, and upgrade on their next use; regenerating gives them the fast path at once.'
    : '';
}

$('#refresh-keys').addEventListener('click', () => loadKeys());
// Each change starts again from the first page; typing waits for a pause.
let searchTimer = null;
const reload = () => {
  state.offset = 0;
  loadKeys();
};
$('#keys-search').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(reload, 200);
});
$('#keys-filters').addEventListener('submit', (e) => {
  e.preventDefault();
  clearTimeout(searchTimer);
  reload();
});
for (const id of ['#keys-status', '#keys-owner', '#keys-sort']) $(id).addEventListener('change', reload);
$('#prev-page').addEventListener('click', () => {
  state.offset = Math.max(0, state.offset - PAGE);
  loadKeys();
});
$('#next-page').addEventListener('click', () => {
  state.offset += PAGE;
  loadKeys();
});

const keyById = (id) => state.keys.find((k) => k.id === id);
/** After the table re-renders, the element that opened a dialog is gone: focus its successor. */
const focusRowAction = (id, action) => () =>
  document.querySelector(`#keys-body button[data-id="${CSS.escape(id)}"][data-action="${action}"]`) ??
  document.querySelector(`#keys-body tr[data-id="${CSS.escape(id)}"] button`) ??
  $('#new-key');

$('#keys-body').addEventListener('click', (e) => {
  const button = e.target.closest('button[data-action]');
  if (!button) return;
  const key = keyById(button.dataset.id);
  if (!key) return;
  if (button.dataset.action === 'delete') openDelete(key);
  else if (button.dataset.action === 'regenerate') openRegenerate(key);
  else if (button.dataset.action === 'edit') openEdit(key);
  else if (button.dataset.action === 'usage') openUsage(key);
});

for (const d of document.querySelectorAll('dialog')) {
  d.addEventListener('click', (e) => {
    if (e.target.closest('[data-close]')) d.close();
  });
}

// ---- generate ------------------------------------------------------------------------

/** undefined when empty (create: leave the field out), else the number (dom.js readNumber). */
const numberOrNull = (input, opts) => readNumber(input, opts) ?? undefined;

function fillOwners() {
  const field = $('#owner-field');
  field.hidden = !isAdmin() || state.users.size === 0;
  if (field.hidden) return;
  const me = API.session.user;
  const users = [...state.users.values()].filter((u) => u.status === 'active' && u.role !== 'system');
  users.sort((a, b) => (a.id === me.id ? -1 : b.id === me.id ? 1 : a.email.localeCompare(b.email)));
  $('#create-owner').replaceChildren(
    ...users.map((u) => h('option', { value: u.id }, u.id === me.id ? `${u.email} (you)` : u.email)),
  );
}

$('#new-key').addEventListener('click', () => {
  $('#create-form').reset();
  showError($('#create-error'), '');
  fillOwners();
  openDialog($('#create-dialog'), { focus: $('#create-name'), fallback: () => $('#new-key') });
});

$('#create-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const err = $('#create-error');
  let body;
  try {
    const name = $('#create-name').value.trim();
    if (!name) throw new Error('Give the key a name.');
    body = { name, quota_period: $('#create-period').value };
    const quota = numberOrNull($('#create-quota'), { integer: true });
    const budget = numberOrNull($('#create-budget'), { integer: false });
    const rpm = numberOrNull($('#create-rpm'), { integer: true });
    const tpm = numberOrNull($('#create-tpm'), { integer: true });
    if (quota !== undefined) body.quota_limit = quota;
    if (budget !== undefined) body.max_budget = budget;
    if (rpm !== undefined) body.rate_limit_rpm = rpm;
    if (tpm !== undefined) body.rate_limit_tpm = tpm;
    const models = $('#create-models')
      .value.split(',')
      .map((m) => m.trim())
      .filter(Boolean);
    if (models.length) body.allowed_models = models;
    const scopes = [...document.querySelectorAll('#create-scopes input:checked')].map((c) => c.value);
    if (scopes.length) body.permissions = scopes;
    const expiry = $('#create-expiry').value;
    if (expiry) {
      const at = new Date(expiry);
      if (Number.isNaN(at.getTime())) throw new Error('Expires is not a valid date.');
      body.expires_at = at.toISOString();
    }
    if (!$('#owner-field').hidden && $('#create-owner').value) body.user_id = $('#create-owner').value;
  } catch (validation) {
    showError(err, validation.message);
    return;
  }
  const submit = $('#create-submit');
  submit.disabled = true;
  try {
    const created = await API.createKey(body);
    $('#create-dialog').close();
    state.offset = 0;
    await loadKeys();
    showSecret(created, { returnTo: focusRowAction(created.id, 'usage') });
  } catch (apiErr) {
    showError(err, apiErr.message);
  } finally {
    submit.disabled = false;
  }
});

// ---- the key, shown once -------------------------------------------------------------

function showSecret(created, { returnTo, grace } = {}) {
  const dialog = $('#secret-dialog');
  $('#secret-name').textContent = created.name;
  $('#secret-value').value = created.key;
  $('#copy-status').textContent = '';
  const graceNote = $('#secret-grace');
  graceNote.hidden = !grace;
  graceNote.textContent = grace ?? '';
  dialog.addEventListener(
    'close',
    () => {
      // Gone from the page for good: only the prefix remains, in the table.
      $('#secret-value').value = '';
      $('#copy-status').textContent = '';
    },
    { once: true },
  );
  openDialog(dialog, { focus: $('#copy-key'), returnTo });
  $('#secret-value').select();
}

$('#copy-key').addEventListener('click', async () => {
  const input = $('#secret-value');
  const ok = await copyText(input.value, input);
  $('#copy-status').textContent = ok
    ? 'Copied to the clipboard.'
    : 'Could not copy automatically: the key is selected, press Ctrl+C (⌘C on a Mac).';
  if (!ok) input.select();
});
// Cleared before the dialog closes: its 'close' event (which also clears it, after Escape)
// comes a task later, while the dialog is already gone.
$('#secret-done').addEventListener('click', () => {
  $('#secret-value').value = '';
  $('#secret-dialog').close();
});

// ---- edit ----------------------------------------------------------------------------

/** An ISO time as a datetime-local value (the browser's time zone). */
function localInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

let editKey = null;
function openEdit(key) {
  editKey = key;
  $('#edit-form').reset();
  $('#edit-key-name').textContent = key.name;
  $('#edit-name').value = key.name;
  $('#edit-quota').value = key.quota_limit ?? '';
  $('#edit-budget').value = key.max_budget ?? '';
  $('#edit-period').value = key.quota_period;
  $('#edit-rpm').value = key.rate_limit_rpm ?? '';
  $('#edit-tpm').value = key.rate_limit_tpm ?? '';
  $('#edit-models').value = (key.allowed_models ?? []).join(', ');
  $('#edit-expiry').value = localInput(key.expires_at);
  // Members may rename and bring the expiry forward; limits are for admins (the API says so too).
  $('#edit-limits').disabled = !isAdmin();
  $('#edit-limits-note').hidden = isAdmin();
  showError($('#edit-error'), '');
  openDialog($('#edit-dialog'), { focus: $('#edit-name'), fallback: focusRowAction(key.id, 'edit') });
}

/** Only what changed, with null for a cleared limit (= unlimited) or expiry (= never). */
function editPatch(key) {
  const patch = {};
  const name = $('#edit-name').value.trim();
  if (!name) throw new Error('Give the key a name.');
  if (name !== key.name) patch.name = name;
  if (isAdmin()) {
    const num = (input, integer) => numberOrNull(input, { integer }) ?? null;
    const quota = num($('#edit-quota'), true);
    const budget = num($('#edit-budget'), false);
    const rpm = num($('#edit-rpm'), true);
    if (rpm === 0) throw new Error('Requests per minute must be 1 or more (empty: unlimited).');
    const tpm = num($('#edit-tpm'), true);
    if (tpm === 0) throw new Error('Tokens per minute must be 1 or more (empty: unlimited).');
    if (tpm !== (key.rate_limit_tpm ?? null)) patch.rate_limit_tpm = tpm;
    if (quota !== key.quota_limit) patch.quota_limit = quota;
    if (budget !== key.max_budget) patch.max_budget = budget;
    if (rpm !== key.rate_limit_rpm) patch.rate_limit_rpm = rpm;
    if ($('#edit-period').value !== key.quota_period) patch.quota_period = $('#edit-period').value;
    const models = $('#edit-models')
      .value.split(',')
      .map((m) => m.trim())
      .filter(Boolean);
    const next = models.length ? models : null;
    if (JSON.stringify(next) !== JSON.stringify(key.allowed_models?.length ? key.allowed_models : null))
      patch.allowed_models = next;
  }
  const expiry = $('#edit-expiry').value;
  if (expiry !== localInput(key.expires_at)) {
    if (!expiry) patch.expires_at = null;
    else {
      const at = new Date(expiry);
      if (Number.isNaN(at.getTime())) throw new Error('Expires is not a valid date.');
      patch.expires_at = at.toISOString();
    }
  }
  return patch;
}

$('#edit-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  let patch;
  try {
    patch = editPatch(editKey);
  } catch (validation) {
    return showError($('#edit-error'), validation.message);
  }
  const submit = $('#edit-submit');
  submit.disabled = true;
  try {
    if (Object.keys(patch).length) await API.updateKey(editKey.id, patch);
    $('#edit-dialog').close();
    await loadKeys();
  } catch (err) {
    showError($('#edit-error'), err.message);
  } finally {
    submit.disabled = false;
  }
});

// ---- regenerate ----------------------------------------------------------------------

let regenKey = null;
function openRegenerate(key) {
  regenKey = key;
  $('#regen-form').reset();
  $('#regen-name').textContent = key.name;
  showError($('#regen-error'), '');
  openDialog($('#regen-dialog'), {
    focus: $('#regen-grace'),
    fallback: focusRowAction(key.id, 'regenerate'),
  });
}

$('#regen-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const raw = $('#regen-grace').value.trim() || '0';
  const minutes = Number(raw);
  if (!Number.isInteger(minutes) || minutes < 0 || minutes > 43200) {
    return showError($('#regen-error'), 'The grace period is a whole number of minutes from 0 to 43200.');
  }
  const submit = $('#regen-submit');
  submit.disabled = true;
  try {
    const res = await API.regenerateKey(regenKey.id, minutes * 60);
    $('#regen-dialog').close();
    await loadKeys();
    const grace = res.previous_key_valid_until
      ? `The old key keeps working until ${fmtDate(res.previous_key_valid_until)}.`
      : 'The old key no longer works.';
    showSecret(res, { returnTo: focusRowAction(res.id, 'regenerate'), grace });
  } catch (err) {
    showError($('#regen-error'), err.message);
  } finally {
    submit.disabled = false;
  }
});

// ---- delete --------------------------------------------------------------------------

let deleteKeyTarget = null;
function openDelete(key) {
  deleteKeyTarget = key;
  $('#delete-name').textContent = key.name;
  $('#delete-prefix').textContent = `${key.key_prefix}…`;
  showError($('#delete-error'), '');
  openDialog($('#delete-dialog'), {
    focus: $('#delete-dialog [data-close]'),
    fallback: focusRowAction(key.id, 'usage'),
  });
}

$('#delete-confirm').addEventListener('click', async () => {
  const button = $('#delete-confirm');
  button.disabled = true;
  try {
    await API.deleteKey(deleteKeyTarget.id);
    $('#delete-dialog').close();
    await loadKeys();
  } catch (err) {
    showError($('#delete-error'), err.message);
  } finally {
    button.disabled = false;
  }
});

// ---- usage chart ---------------------------------------------------------------------

let usageKey = null;
const DAYS = 30;

async function loadUsage() {
  const body = $('#usage-body');
  const key = usageKey;
  body.setAttribute('aria-busy', 'true');
  try {
    const to = new Date(Date.now() + 60000);
    const from = new Date(to.getTime() - DAYS * 86400000);
    const [totals, daily] = await Promise.all([
      API.keyUsage(key.id),
      API.usageByDay(key.id, from.toISOString(), to.toISOString()),
    ]);
    if (usageKey !== key) return;
    const cp = totals.current_period;
    const stat = (label, value) => h('div', { class: 'stat' }, h('dt', {}, label), h('dd', {}, value));
    const summary = h(
      'dl',
      { class: 'stats' },
      stat('Requests (30 days)', fmtInt(daily.totals.requests)),
      stat('Tokens (30 days)', fmtInt(daily.totals.total_tokens)),
      stat('Cost (30 days)', fmtUsd(daily.totals.cost_usd)),
      stat(
        cp.period === 'none' ? 'Tokens (all time)' : `Tokens this ${cp.period === 'daily' ? 'day' : 'month'}`,
        cp.tokens === null
          ? 'unavailable'
          : `${fmtInt(cp.tokens)}${cp.quota_limit === null ? '' : ` / ${fmtInt(cp.quota_limit)}`}`,
      ),
    );
    body.replaceChildren(summary, usageChart(daily.data, daily.to, DAYS));
    showError($('#usage-error'), '');
  } catch (err) {
    if (usageKey === key) showError($('#usage-error'), err.message);
  } finally {
    body.removeAttribute('aria-busy');
  }
}

function openUsage(key) {
  usageKey = key;
  $('#usage-name').textContent = key.name;
  $('#usage-body').replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  showError($('#usage-error'), '');
  openDialog($('#usage-dialog'), {
    focus: $('#usage-dialog [data-close]'),
    fallback: focusRowAction(key.id, 'usage'),
  });
  loadUsage();
}
$('#usage-refresh').addEventListener('click', loadUsage);
$('#usage-dialog').addEventListener('close', () => {
  usageKey = null;
});

// ---- start ---------------------------------------------------------------------------

if (API.session.token && API.session.user) enter();
else showLogin();
