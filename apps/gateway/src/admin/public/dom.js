// DOM helpers. API data only ever enters the page as text (textContent / attribute values),
// never as HTML.

/**
 * h('td', { class: 'num', dataset: { label: 'Name' } }, 'text', childNode, ...)
 * Strings and numbers become text nodes; null/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** Show (or with an empty message hide) an inline error element. */
export function showError(el, message) {
  el.textContent = message ?? '';
  el.hidden = !message;
}

const nf = new Intl.NumberFormat(undefined);
export const fmtInt = (n) => nf.format(n);
export function fmtUsd(n) {
  if (n === 0) return '$0';
  // Small amounts (one mock completion costs fractions of a cent) keep two significant digits.
  if (Math.abs(n) < 0.01) return `$${n.toLocaleString(undefined, { maximumSignificantDigits: 2 })}`;
  return `$${n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
export function fmtRelative(iso, now = Date.now()) {
  const diff = (new Date(iso).getTime() - now) / 1000;
  const abs = Math.abs(diff);
  if (abs < 45) return diff <= 0 ? 'just now' : 'in a moment';
  const units = [
    ['minute', 60],
    ['hour', 3600],
    ['day', 86400],
    ['month', 2592000],
    ['year', 31536000],
  ];
  let unit = units[0];
  for (const u of units) if (abs >= u[1]) unit = u;
  return rtf.format(Math.round(diff / unit[1]), unit[0]);
}

export const fmtDay = (iso) => new Date(iso).toLocaleDateString(undefined, { dateStyle: 'medium' });
export const fmtDate = (iso) =>
  new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/**
 * <dialog> with focus management: showModal() traps focus and Escape closes it; on close
 * the focus goes to returnTo() when given, else back to where it came from (or to
 * fallback() when that element has left the page).
 */
export function openDialog(dialog, { focus, fallback, returnTo } = {}) {
  const opener = document.activeElement;
  dialog.addEventListener(
    'close',
    () => {
      const back = opener && opener !== document.body && opener.isConnected ? opener : null;
      const target = returnTo?.() ?? back ?? fallback?.();
      target?.focus();
    },
    { once: true },
  );
  dialog.showModal();
  (focus ?? dialog.querySelector('[autofocus], input, select, textarea, button'))?.focus();
}

/** Clipboard API when allowed, else select the text and execCommand('copy'). */
export async function copyText(text, input) {
  if (navigator.clipboard?.writeText && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Permission refused: try the selection fallback.
    }
  }
  input.focus();
  input.select();
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}

/** A number input: null when empty; a clear error naming the field when not a number of 0 or more. */
export function readNumber(input, { integer }) {
  const raw = input.value.trim();
  if (raw === '') return null;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n)))
    throw new Error(
      `${input.labels[0].textContent} must be a ${integer ? 'whole ' : ''}number of 0 or more.`,
    );
  return n;
}

const PER = { none: '', daily: ' / day', monthly: ' / month' };
/** A limit with its reset period ("50,000 / month"), or "unlimited". */
export const limitText = (v, fmt, period) =>
  v === null ? h('span', { class: 'muted' }, 'unlimited') : `${fmt(v)}${PER[period] ?? ''}`;

/** A list's pager: "1–20 of 35", Previous/Next enabled as they apply, hidden for one page. */
export function showPager(prefix, offset, count, total, size) {
  const end = offset + count;
  $(`#${prefix}-page-info`).textContent =
    `${fmtInt(total ? offset + 1 : 0)}–${fmtInt(end)} of ${fmtInt(total)}`;
  $(`#${prefix}-prev`).disabled = offset === 0;
  $(`#${prefix}-next`).disabled = end >= total;
  $(`#${prefix}-pager`).hidden = total <= size;
}
