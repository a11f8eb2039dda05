// Fleet: counts overall and per group, the device table (filters, search, sort, pages from the hub), model versions.
// Uses GET /api/fleet/summary and GET /api/devices/page; a hub without them is served from GET /api/devices instead
// (filtered, sorted and paged here).
import { ApiError, api, query } from '../api.js';
import { onLive } from '../live.js';
import { ago, badge, h, mount, num, problem, table, throttle } from '../ui.js';

const PAGE_SIZE = 50;
const columns = [
  ['id', 'Device'], ['group', 'Group'], ['presence', 'Presence'], ['lastSeen', 'Last seen'], ['model', 'Model'], ['p99Ms', 'p99 ms'],
  ['cpuPercent', 'CPU %'], [null, 'Mem %'], ['temperatureC', '°C'], ['outboxDepth', 'Outbox'], [null, 'Dropped'], ['driftStatus', 'Drift'],
];

/** Filters, sort and page live in the URL (#/fleet?group=…&sort=-lastSeen&page=2), so a view can be shared. */
function stateFromHash() {
  const q = new URLSearchParams(location.hash.split('?')[1] ?? '');
  return {
    q: q.get('q') ?? '', group: q.get('group') ?? '', status: q.get('status') ?? '', model: q.get('model') ?? '', tag: q.get('tag') ?? '',
    drift: q.get('drift') ?? '', sort: q.get('sort') ?? 'id', page: Number(q.get('page') ?? 1) || 1,
  };
}

function setHash(state) {
  const q = query({ ...state, page: state.page > 1 ? state.page : '', sort: state.sort === 'id' ? '' : state.sort });
  history.replaceState(null, '', `#/fleet${q}`);
}

// --- fallback for hubs without the paged endpoints -------------------------------------------------------------
let legacy = null; // { at, devices: Promise } — one request serves the counts and the table

function legacyDevices(fresh) {
  if (!legacy || (fresh && Date.now() - legacy.at > 500) || Date.now() - legacy.at > 2000) {
    const devices = api('/api/devices');
    legacy = { at: Date.now(), devices };
    devices.catch(() => { legacy = null; });
  }
  return legacy.devices;
}

const drifting = (s) => s === 'moderate' || s === 'major';

function legacyRow(d) {
  return {
    id: d.id, group: d.group, tags: d.tags, presence: d.lastSeen ? d.presence : 'neverSeen', lastSeen: d.lastSeen, model: d.model, version: d.modelVersion,
    p99Ms: d.latencyP99Ms, cpuPercent: null, memoryPercent: null, temperatureC: null, outboxDepth: null, outboxDropped: null, driftStatus: d.drift, healthy: null,
  };
}

function counts(rows) {
  const c = { total: rows.length, online: 0, offline: 0, neverSeen: 0, unhealthy: null, drifting: 0 };
  for (const r of rows) {
    if (!r.lastSeen) c.neverSeen++;
    else if (r.presence === 'online') c.online++;
    else c.offline++;
    if (drifting(r.driftStatus)) c.drifting++;
  }
  return c;
}

async function legacySummary(fresh) {
  const rows = (await legacyDevices(fresh)).map(legacyRow);
  const groups = new Map();
  const models = new Map();
  for (const r of rows) {
    const g = r.group ?? '';
    groups.set(g, [...(groups.get(g) ?? []), r]);
    if (r.model) {
      const key = `${r.model}@${r.version}`;
      models.set(key, { name: r.model, version: r.version, devices: (models.get(key)?.devices ?? 0) + 1 });
    }
  }
  return {
    ...counts(rows),
    groups: [...groups].map(([group, rs]) => ({ group, ...counts(rs) })).sort((a, b) => a.group.localeCompare(b.group)),
    models: [...models.values()],
  };
}

async function legacyPage(s, fresh) {
  let rows = (await legacyDevices(fresh)).map(legacyRow);
  const needle = s.q.toLowerCase();
  rows = rows.filter((r) => (!needle || r.id.toLowerCase().includes(needle) || (r.group ?? '').toLowerCase().includes(needle))
    && (!s.group || r.group === s.group)
    && (!s.status || r.presence === s.status)
    && (!s.model || r.model === s.model || `${r.model}@${r.version}` === s.model)
    && (!s.drift || (s.drift === 'drifting' ? drifting(r.driftStatus) : (r.driftStatus ?? 'none') === s.drift))
    && (!s.tag || (s.tag.includes('=') ? r.tags?.[s.tag.split('=')[0]] === s.tag.slice(s.tag.indexOf('=') + 1) : s.tag in (r.tags ?? {}))));
  const desc = s.sort.startsWith('-');
  const key = s.sort.replace(/^-/, '');
  rows.sort((a, b) => {
    const x = a[key] ?? '';
    const y = b[key] ?? '';
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return desc ? -c : c;
  });
  const start = (s.page - 1) * PAGE_SIZE;
  return { total: rows.length, page: s.page, pageSize: PAGE_SIZE, items: rows.slice(start, start + PAGE_SIZE) };
}

// --- the page ------------------------------------------------------------------------------------------------------
let useLegacy = false;

async function loadSummary(fresh) {
  if (!useLegacy) {
    try {
      return await api('/api/fleet/summary');
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      useLegacy = true;
    }
  }
  return legacySummary(fresh);
}

async function loadPage(s, fresh) {
  if (!useLegacy) {
    try {
      return await api(`/api/devices/page${query({ ...s, pageSize: PAGE_SIZE })}`);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      useLegacy = true;
    }
  }
  return legacyPage(s, fresh);
}

function countCards(c) {
  const card = (label, value, testid, cls) => h(`div.count${cls ? `.${cls}` : ''}`, { 'data-testid': testid }, h('b', value ?? '—'), h('span', label));
  return h('div.counts', { 'data-testid': 'counts' },
    card('devices', c.total, 'count-total'), card('online', c.online, 'count-online', 'ok'), card('offline', c.offline, 'count-offline', 'bad'),
    card('never seen', c.neverSeen, 'count-never'), card('unhealthy', c.unhealthy, 'count-unhealthy', 'warn'), card('drifting', c.drifting, 'count-drifting', 'warn'));
}

function deviceRow(d) {
  const presence = d.presence ?? 'neverSeen';
  return h('tr', { 'data-device': d.id, 'data-presence': presence },
    h('td', h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)),
    h('td', d.group ?? '—'),
    h('td', badge(presence === 'neverSeen' ? 'never seen' : presence, 'presence')),
    h('td', { title: d.lastSeen ?? '' }, ago(d.lastSeen)),
    h('td', d.model ? `${d.model}@${d.version ?? '?'}` : '—'),
    h('td.n', num(d.p99Ms, 2)),
    h('td.n', num(d.cpuPercent, 0)),
    h('td.n', num(d.memoryPercent, 0)),
    h('td.n', num(d.temperatureC, 0)),
    h('td.n', d.outboxDepth ?? '—'),
    h('td.n', d.outboxDropped ?? '—'),
    h('td', d.driftStatus ? badge(d.driftStatus) : '—'));
}

export async function render(main) {
  const s = stateFromHash();
  const countsBox = h('section');
  const groupsBox = h('section');
  const modelsBox = h('section');
  const tableBox = h('section');
  const pager = h('div.pager');
  const input = (name, placeholder, type = 'search') => h('input', {
    type, name, placeholder, value: s[name], 'data-testid': `filter-${name}`, oninput: debounce((e) => { s[name] = e.target.value.trim(); s.page = 1; refresh(); }, 250),
  });
  const select = (name, options) => h('select', { name, 'data-testid': `filter-${name}`, onchange: (e) => { s[name] = e.target.value; s.page = 1; refresh(); } },
    options.map(([v, label]) => h('option', { value: v, selected: s[name] === v }, label)));
  const groupSelect = h('span');
  const filters = h('div.filters',
    input('q', 'search id or group'), groupSelect,
    select('status', [['', 'any presence'], ['online', 'online'], ['offline', 'offline'], ['neverSeen', 'never seen'], ['unhealthy', 'unhealthy']]),
    input('model', 'model[@version]', 'text'), input('tag', 'tag or key=value', 'text'),
    select('drift', [['', 'any drift'], ['drifting', 'drifting'], ['ok', 'ok'], ['watch', 'watch'], ['moderate', 'moderate'], ['major', 'major'], ['none', 'no report']]));
  mount(main, h('h1', 'Fleet'), countsBox, h('h2', 'Devices'), filters, tableBox, pager, h('div.two', groupsBox, modelsBox));

  let seq = 0;
  async function refresh(fresh = false) {
    const mine = ++seq;
    setHash(s);
    try {
      const [summary, page] = await Promise.all([loadSummary(fresh), loadPage(s, fresh)]);
      if (mine !== seq) return; // a newer refresh is under way
      performance.mark('edgeml:data');
      mount(countsBox, countCards(summary));
      mount(groupSelect, h('select', { name: 'group', 'data-testid': 'filter-group', onchange: (e) => { s.group = e.target.value; s.page = 1; refresh(); } },
        h('option', { value: '' }, 'any group'), summary.groups.filter((g) => g.group).map((g) => h('option', { value: g.group, selected: s.group === g.group }, g.group))));
      mount(groupsBox, h('h2', 'Groups'), table(['Group', 'Devices', 'Online', 'Offline', 'Never seen', 'Unhealthy', 'Drifting'],
        summary.groups.map((g) => h('tr', h('td', g.group || '(none)'), h('td.n', g.total), h('td.n', g.online), h('td.n', g.offline), h('td.n', g.neverSeen),
          h('td.n', g.unhealthy ?? '—'), h('td.n', g.drifting))), { 'data-testid': 'groups' }));
      mount(modelsBox, h('h2', 'Model versions'), table(['Model', 'Version', 'Devices'],
        summary.models.map((m) => h('tr', h('td', m.name), h('td', m.version), h('td.n', m.devices))), { 'data-testid': 'model-versions' }));
      const head = columns.map(([key, label]) => {
        if (!key) return h('th', label);
        const on = s.sort.replace(/^-/, '') === key;
        const arrow = on ? (s.sort.startsWith('-') ? ' ▼' : ' ▲') : '';
        return h('th', h('button.sort', {
          type: 'button', 'data-sort': key, 'aria-sort': on ? (s.sort.startsWith('-') ? 'descending' : 'ascending') : 'none',
          onclick: () => { s.sort = s.sort === key ? `-${key}` : key; refresh(); },
        }, label + arrow));
      });
      mount(tableBox, page.items.length ? table(head, page.items.map(deviceRow), { 'data-testid': 'devices', class: 'devices' })
        : h('p.muted', { 'data-testid': 'devices-empty' }, 'No device matches.'));
      const pages = Math.max(1, Math.ceil(page.total / page.pageSize));
      mount(pager,
        h('button', { type: 'button', disabled: s.page <= 1, onclick: () => { s.page--; refresh(); } }, '‹ previous'),
        h('span', { 'data-testid': 'page-info' }, `page ${page.page} of ${pages} · ${page.total} devices`),
        h('button', { type: 'button', disabled: s.page >= pages, onclick: () => { s.page++; refresh(); } }, 'next ›'));
      main.dataset.rendered = 'fleet';
      performance.mark('edgeml:rendered');
    } catch (e) {
      if (mine === seq) mount(countsBox, problem(e));
    }
  }

  await refresh(true);
  // Live: presence and health change the counts and the rows; at most one refresh a second however many events come.
  const later = throttle(() => refresh(true), 1000);
  return onLive((kind) => {
    if (kind === 'presence' || kind === 'health' || kind === 'desired' || kind === 'alert' || kind === 'poll') later();
  });
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
