// The users view (admins): list with limits and 30-day use, add (a generated password shown
// once), edit role, status and limits, disable / enable, and a link to the user's keys.
// API data is inserted as text only (dom.js).
import * as API from './api.js';
import {
  $,
  copyText,
  fmtInt,
  fmtUsd,
  h,
  limitText,
  openDialog,
  readNumber,
  showError,
  showPager,
} from './dom.js';

const PAGE = 50;
const DAY = 86400000;
const state = { offset: 0, total: 0, users: [], editing: null, showKeysOf: () => {}, changed: () => {} };

/** showKeysOf(user): open the keys view filtered to the user; changed(): users were added or edited. */
export function initUsers({ showKeysOf, changed }) {
  state.showKeysOf = showKeysOf;
  state.changed = changed;
}

/** A password of 20 base62 characters (~119 bits) from the browser's CSPRNG. */
function generatePassword() {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  const out = [];
  const bytes = new Uint8Array(64);
  while (out.length < 20) {
    crypto.getRandomValues(bytes);
    for (const b of bytes) {
      // Rejection sampling: no bias towards the first letters.
      if (b < 256 - (256 % alphabet.length) && out.length < 20) out.push(alphabet[b % alphabet.length]);
    }
  }
  return out.join('');
}

function userRow(u, usage) {
  const me = API.session.user;
  const cell = (label, ...content) => h('td', { dataset: { label } }, ...content);
  const used = usage.get(u.id);
  const btn = (text, action, cls = 'secondary small') =>
    h(
      'button',
      { type: 'button', class: cls, dataset: { action, id: u.id }, 'aria-label': `${text} ${u.email}` },
      text,
    );
  const human = u.role !== 'system';
  const self = me && u.id === me.id;
  return h(
    'tr',
    { dataset: { id: u.id }, class: u.status === 'active' ? null : 'inactive' },
    h(
      'th',
      { scope: 'row', dataset: { label: 'Email' } },
      h('span', { class: 'user-email' }, u.email),
      self ? h('span', { class: 'muted' }, ' (you)') : null,
      u.name ? h('div', { class: 'muted small' }, u.name) : null,
    ),
    cell('Role', u.role),
    cell('Status', h('span', { class: `badge ${u.status === 'active' ? 'active' : 'revoked'}` }, u.status)),
    cell('Token quota', limitText(u.quota_limit, fmtInt, u.quota_period)),
    cell('Budget', limitText(u.max_budget, fmtUsd, u.quota_period)),
    cell('Tokens (30 days)', fmtInt(used?.total_tokens ?? 0)),
    cell('Spend (30 days)', fmtUsd(used?.cost_usd ?? 0)),
    h(
      'td',
      { class: 'row-actions', dataset: { label: 'Actions' } },
      h(
        'div',
        { class: 'row-actions-inner' },
        btn('Keys', 'keys'),
        human ? btn('Edit', 'edit') : null,
        human && !self
          ? u.status === 'active'
            ? btn('Disable', 'disable', 'danger small')
            : btn('Enable', 'enable')
          : null,
      ),
    ),
  );
}

export async function loadUsers() {
  try {
    const to = new Date(Date.now() + 60000);
    const from = new Date(to.getTime() - 30 * DAY);
    const [page, usage] = await Promise.all([
      API.api('GET', `/api/v1/users?limit=${PAGE}&offset=${state.offset}`),
      API.api(
        'GET',
        `/api/v1/usage?group_by=user&from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`,
      ),
    ]);
    state.users = page.data;
    state.total = page.total;
    const byUser = new Map(usage.data.map((r) => [r.user_id, r]));
    $('#users-body').replaceChildren(...page.data.map((u) => userRow(u, byUser)));
    showPager('users', state.offset, page.data.length, state.total, PAGE);
    showError($('#users-error'), '');
  } catch (err) {
    if (err.status !== 401) showError($('#users-error'), err.message);
  }
}

export function resetUsers() {
  state.offset = 0;
  state.users = [];
  $('#users-body').replaceChildren();
}

function openUserDialog(user) {
  state.editing = user;
  $('#user-form').reset();
  showError($('#user-error'), '');
  $('#user-dialog-title').textContent = user ? `Edit ${user.email}` : 'Add user';
  $('#user-submit').textContent = user ? 'Save changes' : 'Add user';
  $('#user-email-field').hidden = !!user;
  $('#user-status-field').hidden = !user;
  $('#user-help').hidden = !!user;
  if (user) {
    $('#user-name').value = user.name ?? '';
    $('#user-role').value = user.role;
    $('#user-status').value = user.status;
    $('#user-quota').value = user.quota_limit ?? '';
    $('#user-budget').value = user.max_budget ?? '';
    $('#user-period').value = user.quota_period;
  }
  openDialog($('#user-dialog'), { focus: user ? $('#user-name') : $('#user-email') });
}

$('#user-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const user = state.editing;
  let body;
  try {
    body = {
      role: $('#user-role').value,
      quota_limit: readNumber($('#user-quota'), { integer: true }),
      max_budget: readNumber($('#user-budget'), { integer: false }),
      quota_period: $('#user-period').value,
    };
    const name = $('#user-name').value.trim();
    if (user) {
      body.status = $('#user-status').value;
      if (name !== (user.name ?? '')) body.name = name || null;
      // Only what changed: the audit entry then says exactly that.
      for (const k of Object.keys(body)) if (body[k] === user[k]) delete body[k];
    } else {
      const email = $('#user-email').value.trim();
      if (!email) throw new Error('Enter the email address the user signs in with.');
      body.email = email;
      if (name) body.name = name;
      for (const k of ['quota_limit', 'max_budget']) if (body[k] === null) delete body[k];
    }
  } catch (validation) {
    return showError($('#user-error'), validation.message);
  }
  const submit = $('#user-submit');
  submit.disabled = true;
  try {
    if (user) {
      if (Object.keys(body).length)
        await API.api('PATCH', `/api/v1/users/${encodeURIComponent(user.id)}`, body);
      $('#user-dialog').close();
    } else {
      const password = generatePassword();
      const created = await API.api('POST', '/api/v1/users', { ...body, password });
      $('#user-dialog').close();
      showPassword(created.email, password);
    }
    state.changed();
    await loadUsers();
  } catch (err) {
    showError($('#user-error'), err.message);
  } finally {
    submit.disabled = false;
  }
});

function showPassword(email, password) {
  $('#password-email').textContent = email;
  $('#password-value').value = password;
  $('#password-copy-status').textContent = '';
  $('#password-dialog').addEventListener(
    'close',
    () => {
      // Gone from the page for good.
      $('#password-value').value = '';
    },
    { once: true },
  );
  openDialog($('#password-dialog'), { focus: $('#copy-password'), returnTo: () => $('#new-user') });
  $('#password-value').select();
}

$('#copy-password').addEventListener('click', async () => {
  const input = $('#password-value');
  const ok = await copyText(input.value, input);
  $('#password-copy-status').textContent = ok
    ? 'Copied to the clipboard.'
    : 'Could not copy automatically: the password is selected, press Ctrl+C (⌘C on a Mac).';
});
// Cleared before the dialog closes (its 'close' event comes a task later).
$('#password-done').addEventListener('click', () => {
  $('#password-value').value = '';
  $('#password-dialog').close();
});

async function setStatus(user, status) {
  try {
    await API.api('PATCH', `/api/v1/users/${encodeURIComponent(user.id)}`, { status });
    state.changed();
    await loadUsers();
    document.querySelector(`#users-body tr[data-id="${CSS.escape(user.id)}"] button[data-action]`)?.focus();
  } catch (err) {
    showError($('#users-error'), err.message);
  }
}

$('#users-body').addEventListener('click', (e) => {
  const button = e.target.closest('button[data-action]');
  if (!button) return;
  const user = state.users.find((u) => u.id === button.dataset.id);
  if (!user) return;
  const action = button.dataset.action;
  if (action === 'edit') openUserDialog(user);
  else if (action === 'keys') state.showKeysOf(user);
  else if (action === 'disable') setStatus(user, 'disabled');
  else if (action === 'enable') setStatus(user, 'active');
});
$('#new-user').addEventListener('click', () => openUserDialog(null));
$('#refresh-users').addEventListener('click', () => loadUsers());
$('#users-prev').addEventListener('click', () => {
  state.offset = Math.max(0, state.offset - PAGE);
  loadUsers();
});
$('#users-next').addEventListener('click', () => {
  state.offset += PAGE;
  loadUsers();
});
