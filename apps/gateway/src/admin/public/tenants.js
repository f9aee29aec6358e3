// The tenants view (operator, signed in with the master key): list with admins, limits and
// 30-day use, add, edit limits, disable / enable. API data is inserted as text only (dom.js).
import * as API from './api.js';
import {
  $,
  fmtDay,
  fmtInt,
  fmtUsd,
  h,
  limitText,
  openDialog,
  readNumber,
  showError,
  showPager,
} from './dom.js';

const PAGE = 20;
const DAY = 86400000;
const state = { offset: 0, total: 0, tenants: [], editing: null };

/** The tenant's ledger totals over 30 days (the master key acts in a tenant with X-Tenant-ID). */
async function usageOf(tenant) {
  if (tenant.status !== 'active') return null; // a disabled tenant cannot be named in X-Tenant-ID
  const to = new Date(Date.now() + 60000);
  const from = new Date(to.getTime() - 30 * DAY);
  const q = `group_by=model&from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
  try {
    const res = await API.api('GET', `/api/v1/usage?${q}`, undefined, { 'X-Tenant-ID': tenant.id });
    return res.totals;
  } catch {
    return null;
  }
}

/** The tenant's admins by email (a disabled one marked), and how many more there are. */
function adminList(t) {
  if (!t.admin_count) return h('span', { class: 'muted' }, 'none');
  const more = t.admin_count - t.admins.length;
  return h(
    'ul',
    { class: 'admins' },
    t.admins.map((a) =>
      h(
        'li',
        { class: a.status === 'active' ? null : 'muted' },
        a.email,
        a.status === 'active' ? null : ' (disabled)',
      ),
    ),
    more > 0 ? h('li', { class: 'muted' }, `and ${fmtInt(more)} more`) : null,
  );
}

function tenantRow(t, used) {
  const cell = (label, ...content) => h('td', { dataset: { label } }, ...content);
  const btn = (text, action, cls = 'secondary small') =>
    h(
      'button',
      { type: 'button', class: cls, dataset: { action, id: t.id }, 'aria-label': `${text} ${t.name}` },
      text,
    );
  const dash = () => h('span', { class: 'muted' }, '—');
  return h(
    'tr',
    { dataset: { id: t.id }, class: t.status === 'active' ? null : 'inactive' },
    h('th', { scope: 'row', dataset: { label: 'Name' } }, h('span', { class: 'tenant-name' }, t.name)),
    cell('Status', h('span', { class: `badge ${t.status === 'active' ? 'active' : 'revoked'}` }, t.status)),
    cell('Admins', adminList(t)),
    cell('Token quota', limitText(t.quota_limit, fmtInt, t.quota_period)),
    cell('Budget', limitText(t.max_budget, fmtUsd, t.quota_period)),
    cell('Tokens (30 days)', used ? fmtInt(used.total_tokens) : dash()),
    cell('Spend (30 days)', used ? fmtUsd(used.cost_usd) : dash()),
    cell('Created', fmtDay(t.created_at)),
    h(
      'td',
      { class: 'row-actions', dataset: { label: 'Actions' } },
      h(
        'div',
        { class: 'row-actions-inner' },
        btn('Edit', 'edit'),
        t.status === 'active' ? btn('Disable', 'disable', 'danger small') : btn('Enable', 'enable'),
      ),
    ),
  );
}

export async function loadTenants() {
  try {
    const page = await API.api('GET', `/api/v1/tenants?limit=${PAGE}&offset=${state.offset}`);
    const usage = await Promise.all(page.data.map(usageOf));
    state.tenants = page.data;
    state.total = page.total;
    $('#tenants-body').replaceChildren(...page.data.map((t, i) => tenantRow(t, usage[i])));
    showPager('tenants', state.offset, page.data.length, state.total, PAGE);
    showError($('#tenants-error'), '');
  } catch (err) {
    if (err.status !== 401) showError($('#tenants-error'), err.message);
  }
}

export function resetTenants() {
  state.offset = 0;
  state.tenants = [];
  $('#tenants-body').replaceChildren();
}

function openTenantDialog(tenant) {
  state.editing = tenant;
  $('#tenant-form').reset();
  showError($('#tenant-error'), '');
  $('#tenant-dialog-title').textContent = tenant ? `Edit ${tenant.name}` : 'Add tenant';
  $('#tenant-submit').textContent = tenant ? 'Save changes' : 'Add tenant';
  if (tenant) {
    $('#tenant-name').value = tenant.name;
    $('#tenant-quota').value = tenant.quota_limit ?? '';
    $('#tenant-budget').value = tenant.max_budget ?? '';
    $('#tenant-period').value = tenant.quota_period;
  }
  openDialog($('#tenant-dialog'), { focus: $('#tenant-name') });
}

$('#tenant-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const tenant = state.editing;
  let body;
  try {
    const name = $('#tenant-name').value.trim();
    if (!name) throw new Error('Give the tenant a name.');
    body = {
      name,
      quota_limit: readNumber($('#tenant-quota'), { integer: true }),
      max_budget: readNumber($('#tenant-budget'), { integer: false }),
      quota_period: $('#tenant-period').value,
    };
    if (tenant) {
      for (const k of Object.keys(body)) if (body[k] === tenant[k]) delete body[k];
    } else for (const k of ['quota_limit', 'max_budget']) if (body[k] === null) delete body[k];
  } catch (validation) {
    return showError($('#tenant-error'), validation.message);
  }
  const submit = $('#tenant-submit');
  submit.disabled = true;
  try {
    if (!tenant) await API.api('POST', '/api/v1/tenants', body);
    else if (Object.keys(body).length)
      await API.api('PATCH', `/api/v1/tenants/${encodeURIComponent(tenant.id)}`, body);
    $('#tenant-dialog').close();
    await loadTenants();
  } catch (err) {
    showError($('#tenant-error'), err.message);
  } finally {
    submit.disabled = false;
  }
});

async function setStatus(tenant, status) {
  try {
    await API.api('PATCH', `/api/v1/tenants/${encodeURIComponent(tenant.id)}`, { status });
    await loadTenants();
    document
      .querySelector(`#tenants-body tr[data-id="${CSS.escape(tenant.id)}"] button[data-action]`)
      ?.focus();
  } catch (err) {
    showError($('#tenants-error'), err.message);
  }
}

$('#tenants-body').addEventListener('click', (e) => {
  const button = e.target.closest('button[data-action]');
  if (!button) return;
  const tenant = state.tenants.find((t) => t.id === button.dataset.id);
  if (!tenant) return;
  if (button.dataset.action === 'edit') openTenantDialog(tenant);
  else if (button.dataset.action === 'disable') setStatus(tenant, 'disabled');
  else if (button.dataset.action === 'enable') setStatus(tenant, 'active');
});
$('#new-tenant').addEventListener('click', () => openTenantDialog(null));
$('#refresh-tenants').addEventListener('click', () => loadTenants());
$('#tenants-prev').addEventListener('click', () => {
  state.offset = Math.max(0, state.offset - PAGE);
  loadTenants();
});
$('#tenants-next').addEventListener('click', () => {
  state.offset += PAGE;
  loadTenants();
});
