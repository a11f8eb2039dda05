// Alerts: drift, sensor failures, rule alerts and offline devices (GET /api/alerts), active ones first. A hub without
// that endpoint shows the drift statuses it has (GET /api/devices).
import { ApiError, api, query } from '../api.js';
import { onLive } from '../live.js';
import { badge, h, mount, problem, table, throttle, when } from '../ui.js';

export async function render(main) {
  const kind = h('select', { 'data-testid': 'alert-kind', onchange: () => load() },
    [['', 'all kinds'], ['offline', 'offline'], ['drift', 'drift'], ['sensor', 'sensor'], ['rule', 'rule']].map(([v, l]) => h('option', { value: v }, l)));
  const active = h('select', { 'data-testid': 'alert-active', onchange: () => load() }, h('option', { value: 'true' }, 'active'), h('option', { value: '' }, 'active and cleared'));
  const box = h('div');
  mount(main, h('h1', 'Alerts'), h('div.filters', kind, active), box);

  async function load() {
    try {
      const alerts = await api(`/api/alerts${query({ kind: kind.value, active: active.value, limit: 500 })}`);
      mount(box, alerts.length ? table(['Raised', 'Kind', 'Device', 'Severity', 'Message', 'Cleared'], alerts.map((a) => h('tr',
        h('td', when(a.raisedAt)), h('td', a.kind), h('td', a.device ? h('a', { href: `#/device/${encodeURIComponent(a.device)}` }, a.device) : '—'),
        h('td', badge(a.severity)), h('td', a.message), h('td', a.clearedAt ? when(a.clearedAt) : badge('active')))), { 'data-testid': 'alerts' })
        : h('p.muted', { 'data-testid': 'no-alerts' }, 'No alerts.'));
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        mount(box, problem(e));
        return;
      }
      const devices = await api('/api/devices');
      const drifting = devices.filter((d) => d.drift && d.drift !== 'ok');
      mount(box, h('p.muted', 'This hub has no alert list yet; drift statuses instead.'),
        drifting.length ? table(['Device', 'Drift', 'Since'], drifting.map((d) => h('tr', h('td', h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)),
          h('td', badge(d.drift)), h('td', when(d.driftAt)))), { 'data-testid': 'alerts' }) : h('p.muted', { 'data-testid': 'no-alerts' }, 'No drifting device.'));
    }
    main.dataset.rendered = 'alerts';
  }

  await load();
  const later = throttle(load, 1000);
  return onLive((k) => {
    if (k === 'alert' || k === 'poll') later();
  });
}
