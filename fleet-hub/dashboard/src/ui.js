// Small DOM helpers: h() builds elements (text is always set as text, never parsed as HTML), plus formatting.

/** h('div.cls#id', {attrs}, ...children): an element; children are nodes, strings, numbers, arrays, or null. */
export function h(tag, attrs, ...children) {
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name || 'div');
  for (const part of rest) {
    if (part.startsWith('.')) el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs !== null && attrs !== undefined && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A time as "12:03:04" today, else "2026-11-29 12:03"; '—' when none. */
export function when(t) {
  if (t === null || t === undefined || t === '') return '—';
  const d = typeof t === 'number' ? new Date(t < 1e12 ? t * 1000 : t) : new Date(t);
  if (Number.isNaN(d.getTime())) return '—';
  const iso = d.toISOString();
  const today = new Date().toISOString().slice(0, 10);
  return iso.slice(0, 10) === today ? iso.slice(11, 19) : `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

/** "3 s ago", "5 min ago", "2 h ago". */
export function ago(t) {
  if (!t) return 'never';
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function num(v, digits = 1) {
  return v === null || v === undefined || Number.isNaN(v) ? '—' : Number(v).toFixed(digits);
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** A coloured badge for a state (online, offline, ok, major, active, failed …). */
export function badge(text, testid) {
  const t = text ?? '—';
  return h(`span.badge.b-${String(t).replace(/[^a-z-]/gi, '')}`, { 'data-testid': testid }, t);
}

/** An error shown on the page, in the hub's own words. */
export function problem(e) {
  return h('p.error', { role: 'alert', 'data-testid': 'error' }, e instanceof Error ? e.message : String(e));
}

export function table(head, rows, attrs) {
  return h('div.scroll', h('table', attrs ?? {}, h('thead', h('tr', head.map((c) => (c instanceof Node ? c : h('th', c))))), h('tbody', rows)));
}

/** A key/value list from [key, value, testid?] (a falsy entry is left out). */
export function facts(pairs) {
  return h('dl.facts', pairs.filter(Boolean).map(([k, v, testid]) => [h('dt', k), h('dd', { 'data-testid': testid }, v ?? '—')]));
}

/** Asks before something that cannot be undone; true when confirmed. */
export function confirmAction(text) {
  return window.confirm(text);
}

/**
 * Runs fn at most once per `ms` after calls to the returned function (the last call wins; never starved by a steady
 * stream of calls, unlike a debounce): live events from a large fleet arrive many times a second.
 */
export function throttle(fn, ms) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}
