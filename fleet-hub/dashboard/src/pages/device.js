// Device: identity and enrollment, presence over the last day, health charts over a chosen range, sensors, model and
// update phase, drift per feature, recent predictions, alerts, audit; operator actions (desired model, revoke).
import { ApiError, api, isOperator, post, query } from '../api.js';
import { chart } from '../charts.js';
import { onLive } from '../live.js';
import { ago, badge, confirmAction, facts, h, mount, num, problem, table, throttle, when } from '../ui.js';

const ranges = [['15m', 15 * 60], ['1h', 3600], ['6h', 6 * 3600], ['24h', 86400]];

/** Optional data: an endpoint this hub may not have (404) or that fails shows a note instead of breaking the page. */
async function optional(path) {
  try {
    return { data: await api(path) };
  } catch (e) {
    return { error: e instanceof ApiError && e.status === 404 && /^no such API/.test(e.message) ? 'this hub does not offer it yet' : e.message };
  }
}

/** Seconds since the epoch of a record's device time (ms on the wire). */
const seconds = (at) => (at > 1e12 ? at / 1000 : at);

const sum = (o) => (o ? Object.values(o).reduce((a, b) => a + Number(b || 0), 0) : null);

/**
 * The health measures charted: [label, the hub's series name (GET /api/devices/{id}/health/series), the same value read
 * from a raw health report (HealthReport, camelCase) for a hub without the series endpoint].
 */
export const measures = [
  { key: 'cpu', title: 'CPU', unit: '%', series: [['cpu', 'cpuPercent', (r) => r.system?.cpuPercent]] },
  { key: 'memory', title: 'Memory used', unit: '%', series: [['memory', 'memoryUsedPercent', (r) => r.system?.memoryUsedPercent]] },
  { key: 'rss', title: 'Agent RSS', unit: 'MB', series: [['rss', 'processRssMb', (r) => r.system?.processRssMb]] },
  { key: 'temperature', title: 'Temperature', unit: '°C', series: [['temperature', 'temperatureC', (r) => r.system?.temperatureC]] },
  { key: 'disk', title: 'Disk free', unit: 'MB', series: [['disk free', 'diskFreeMb', (r) => r.system?.diskFreeMb]] },
  { key: 'rate', title: 'Predictions', unit: '/s', series: [['predictions/s', 'inferencesPerSecond', (r) => r.model?.inferencesPerSecond]] },
  { key: 'latency', title: 'Latency', unit: 'ms', series: [['p50', 'latencyP50Ms', (r) => r.model?.latencyP50Ms], ['p99', 'latencyP99Ms', (r) => r.model?.latencyP99Ms]] },
  { key: 'dropped', title: 'Windows dropped', unit: 'total', series: [['dropped', 'windowsDropped', (r) => r.model?.windowsDropped]] },
  { key: 'outbox', title: 'Outbox depth', unit: 'records', series: [['depth', 'outboxDepth', (r) => sum(r.outbox?.depth)]] },
];

/** Buckets asked of the hub per chart: more than a chart is wide in pixels, far fewer than a day of reports. */
const SERIES_POINTS = 600;

/**
 * The charts' data from the hub's downsampled series: per bucket the newest report's value (the line, at that report's
 * time) and the bucket's min and max (the band around it).
 */
async function seriesData(id, since, until) {
  const s = await api(`/api/devices/${encodeURIComponent(id)}/health/series${query({ since: since.toISOString(), until: until.toISOString(), points: SERIES_POINTS })}`);
  return {
    times: s.at.map(seconds),
    reports: s.reports,
    charts: measures.map((m) => m.series.map(([label, name]) => ({ label, values: s.series[name].last, min: s.series[name].min, max: s.series[name].max }))),
  };
}

/** The same from the raw reports, for a hub without the series endpoint: newest first, at most 10,000 a request. */
async function rawData(id, since, until) {
  let records = [];
  let end = until;
  for (let i = 0; i < 4; i++) {
    const part = await api(`/api/devices/${encodeURIComponent(id)}/health${query({ since: since.toISOString(), until: end.toISOString(), limit: 10000 })}`);
    records = records.concat(part);
    if (part.length < 10000) break;
    const oldest = Math.min(...part.map((r) => r.at));
    end = new Date(oldest > 1e12 ? oldest : oldest * 1000);
  }
  // Oldest first, only the range (a hub without since/until answers its newest records).
  const rows = records.filter((r) => seconds(r.at) >= since.getTime() / 1000 && seconds(r.at) <= until.getTime() / 1000 + 60)
    .sort((a, b) => a.at - b.at);
  return {
    times: rows.map((r) => seconds(r.at)),
    reports: rows.length,
    charts: measures.map((m) => m.series.map(([label, , pick]) => ({ label, values: rows.map((r) => { const v = pick(r.data ?? {}); return typeof v === 'number' ? v : null; }) }))),
  };
}

/**
 * The presence bar over [since, until] from the presence changes (GET /api/devices/{id}/presence: the change in effect at
 * `since`, when the hub has one, then every change after it). Before the first change the state is what is known rather
 * than "unknown": the change in effect at `since`; else, with no change at all in the range, the device's presence now
 * (`current`: nothing changed it since `since`); else what the first change changed from (a change to offline was
 * online before it; one to online was not seen before it — a new device, or an older change the hub no longer keeps).
 * Each segment carries its state in `data-presence`.
 */
function presenceTimeline(points, since, until, current) {
  const bar = h('div.timeline', { 'data-testid': 'presence-timeline' });
  const span = until - since;
  const sorted = [...points].sort((a, b) => new Date(a.at) - new Date(b.at));
  const inEffect = sorted.filter((p) => new Date(p.at).getTime() <= since).pop();
  const first = sorted.find((p) => new Date(p.at).getTime() > since);
  let state = inEffect ? inEffect.presence : !first ? (current ?? null) : first.presence === 'offline' ? 'online' : 'neverSeen';
  let from = since;
  const segments = [];
  for (const p of sorted) {
    const t = new Date(p.at).getTime();
    if (t <= since) continue;
    segments.push([from, t, state]);
    from = t;
    state = p.presence;
  }
  segments.push([from, until, state]);
  const label = (st) => (st === 'neverSeen' ? 'never seen' : st ?? 'unknown');
  for (const [a, b, st] of segments) {
    if (b <= a) continue;
    bar.append(h(`span.seg.s-${st ?? 'unknown'}`, { style: `width:${((b - a) / span) * 100}%`, title: `${label(st)} ${when(a)}–${when(b)}`, 'data-presence': st ?? 'unknown' }));
  }
  return h('div', bar, h('div.axis', h('span', when(since)), h('span', 'now')));
}

/**
 * The operator's actions, built once per page (a live refresh must not reset the model being chosen or the last
 * result shown); `update(d)` follows the device's state.
 */
function operatorActions(id, models, reload) {
  const message = h('div');
  const choice = h('select', { 'data-testid': 'desired-model' },
    models.map((m) => h('option', { value: `${m.name}@${m.version}` }, `${m.name}@${m.version}`)));
  const set = h('button', {
    type: 'button', 'data-testid': 'set-desired', disabled: models.length === 0,
    onclick: async () => {
      mount(message);
      try {
        await post(`/api/devices/${encodeURIComponent(id)}/desired`, { model: choice.value });
        mount(message, h('p.ok', { 'data-testid': 'action-result' }, `desired model set to ${choice.value}`));
        reload();
      } catch (e) {
        mount(message, problem(e));
      }
    },
  }, 'Set desired model');
  const revoke = h('button.danger', {
    type: 'button', 'data-testid': 'revoke',
    onclick: async () => {
      if (!confirmAction(`Revoke ${id}? It is disconnected at once and must be enrolled again to come back.`)) return;
      mount(message);
      try {
        await post(`/api/devices/${encodeURIComponent(id)}/revoke`);
        mount(message, h('p.ok', { 'data-testid': 'action-result' }, `${id} revoked`));
        reload();
      } catch (e) {
        mount(message, problem(e));
      }
    },
  }, 'Revoke…');
  const box = h('section.card.actions', { 'data-testid': 'operator-actions' }, h('h2', 'Actions'), h('div.row', choice, set, revoke), message);
  box.update = (d) => { revoke.disabled = d.enrollment === 'revoked'; };
  return box;
}

function driftTable(view) {
  if (!view || !view.features?.length) return h('p.muted', 'no drift reports in this range');
  const stat = (f, name) => f.tests?.find((t) => t.test.toLowerCase().startsWith(name));
  const cell = (t) => (t ? h(`td.n${t.over ? '.over' : ''}`, num(t.statistic, 3)) : h('td.n', '—'));
  return h('div', h('p', 'Status ', badge(view.status, 'drift-status'), ` over ${view.windows} windows`),
    table(['Feature', 'Status', 'Trend', 'PSI', 'KS', 'Wasserstein', 'Mean (baseline)'], view.features.map((f) => h('tr',
      h('td', f.feature), h('td', badge(f.status)), h('td', f.trend), cell(stat(f, 'psi')), cell(stat(f, 'ks')), cell(stat(f, 'wasserstein')),
      h('td.n', `${num(f.mean, 3)} (${num(f.baselineMean, 3)})`))), { 'data-testid': 'drift' }));
}

/**
 * Drift over the last day (GET /api/drift/series: 24 buckets of an hour): PSI, KS and normed Wasserstein, one line per
 * feature; a bucket without drift windows is a gap.
 */
function driftCharts(series) {
  const buckets = series.buckets ?? [];
  const features = [...new Set(buckets.flatMap((b) => (b.features ?? []).map((f) => f.feature)))];
  if (!features.length) return h('p.muted', 'no drift reports in the last day to chart');
  const times = buckets.map((b) => Date.parse(b.until) / 1000);
  const line = (stat) => features.map((name) => ({
    label: name,
    values: buckets.map((b) => b.features?.find((f) => f.feature === name)?.[stat] ?? null),
  }));
  return h('div.charts', { 'data-testid': 'drift-charts' },
    chart('PSI', '', times, line('psi'), 'drift-psi'),
    chart('KS', '', times, line('ks'), 'drift-ks'),
    chart('Wasserstein (normed)', '', times, line('wasserstein'), 'drift-wasserstein'));
}

export async function render(main, [id]) {
  let range = sessionStorage.getItem('edgeml.range') ?? '1h';
  const head = h('div');
  const charts = h('div.charts', { 'data-testid': 'charts' });
  const rangeBar = h('div.ranges', ranges.map(([label]) => h('button', {
    type: 'button', 'data-range': label, class: label === range ? 'on' : '',
    onclick: (e) => {
      range = label;
      sessionStorage.setItem('edgeml.range', label);
      for (const b of rangeBar.children) b.classList.toggle('on', b === e.target);
      loadCharts();
    },
  }, label)));
  const rest = h('div');
  const actions = h('div');
  let actionsBox = null;
  mount(main, h('p', h('a', { href: '#/fleet' }, '‹ Fleet')), head, actions, h('h2', 'Health'), rangeBar, charts, rest);

  let chartSeq = 0;
  async function loadCharts() {
    const mine = ++chartSeq;
    const seconds_ = ranges.find(([l]) => l === range)[1];
    const until = new Date();
    const since = new Date(until.getTime() - seconds_ * 1000);
    let data;
    try {
      data = await seriesData(id, since, until);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && /^no such API/.test(e.message)) {
        try {
          data = await rawData(id, since, until);
        } catch (e2) {
          if (mine === chartSeq) mount(charts, problem(e2));
          return;
        }
      } else {
        if (mine === chartSeq) mount(charts, problem(e));
        return;
      }
    }
    if (mine !== chartSeq) return;
    performance.mark('edgeml:chart-data');
    charts.dataset.reports = String(data.reports);
    mount(charts, measures.map((m, i) => chart(m.title, m.unit, data.times, data.charts[i], `chart-${m.key}`)));
  }

  async function loadRest() {
    let d;
    try {
      d = await api(`/api/devices/${encodeURIComponent(id)}`);
    } catch (e) {
      mount(head, problem(e));
      mount(rest);
      return;
    }
    const day = Date.now() - 86400_000;
    const [presence, drift, driftSeries, predictions, alerts, audit, models] = await Promise.all([
      optional(`/api/devices/${encodeURIComponent(id)}/presence${query({ since: new Date(day).toISOString() })}`),
      optional(`/api/drift${query({ device: id, since: '24h' })}`),
      optional(`/api/drift/series${query({ device: id, since: '24h', buckets: 24 })}`),
      optional(`/api/devices/${encodeURIComponent(id)}/telemetry?limit=20`),
      optional(`/api/alerts${query({ device: id, limit: 50 })}`),
      optional(`/api/audit${query({ device: id })}`),
      isOperator() && !actionsBox ? optional('/api/models') : Promise.resolve({ data: [] }),
    ]);
    // The device's own alert records, only from a hub without the alert list (GET /api/alerts).
    const deviceAlerts = alerts.data ? { data: null } : await optional(`/api/devices/${encodeURIComponent(id)}/alerts?limit=20`);
    const health = d.health ?? {};
    const reported = d.reported ?? {};
    mount(head,
      h('h1', { 'data-testid': 'device-id' }, d.id, ' ', badge(d.lastSeen && d.presence !== 'neverSeen' ? d.presence : 'never seen', 'device-presence')),
      h('div.two',
        h('section.card', h('h2', 'Identity'), facts([
          ['Group', d.group], ['Tags', Object.entries(d.tags ?? {}).map(([k, v]) => `${k}=${v}`).join(', ') || '—'],
          ['Enrollment', badge(d.enrollment, 'enrollment')], ['Enrolled', when(d.enrolledAt)], ['Revoked', d.revokedAt ? when(d.revokedAt) : null],
          ['Last seen', d.lastSeen ? `${when(d.lastSeen)} (${ago(d.lastSeen)})` : 'never'], ['Boot', d.boot], ['Records', d.records],
        ])),
        h('section.card', h('h2', 'Model'), facts([
          ['Active', reported.active ?? (d.model ? `${d.model}@${d.modelVersion}` : null), 'active-model'], ['Previous (other slot)', reported.previous],
          ['Desired', d.desired], ['Update phase', h('span', { 'data-testid': 'update-phase' }, reported.phase ?? '—')],
          ['Phase of', reported.name ? `${reported.name}@${reported.version}` : null, 'phase-model'], ['Reason', reported.reason], ['Confirmed', reported.confirmed === undefined ? null : String(reported.confirmed)],
          ['p99 latency', d.latencyP99Ms === null || d.latencyP99Ms === undefined ? null : `${num(d.latencyP99Ms, 2)} ms`], ['Drift', d.drift ? badge(d.drift) : null],
        ]))));
    if (isOperator()) {
      if (!actionsBox) mount(actions, actionsBox = operatorActions(id, models.data ?? [], () => { loadRest(); }));
      actionsBox.update(d);
    }
    mount(rest,
      h('h2', 'Presence, last 24 h'),
      presence.data ? presenceTimeline(presence.data, day, Date.now(), d.lastSeen ? d.presence : 'neverSeen') : h('p.muted', `presence history: ${presence.error}`),
      h('h2', 'Sensors'),
      (health.sensors ?? []).length ? table(['Sensor', 'State', 'Samples', 'Errors', 'Last error'], health.sensors.map((s) => h('tr',
        h('td', s.name), h('td', badge(s.state)), h('td.n', s.samples), h('td.n', s.errors), h('td', s.lastError ? `${s.lastError} (${when(s.lastErrorAt)})` : '—'))), { 'data-testid': 'sensors' })
        : h('p.muted', 'no health report yet'),
      h('h2', 'Drift per feature (24 h)'),
      drift.data ? driftTable(drift.data) : h('p.muted', drift.error),
      driftSeries.data ? driftCharts(driftSeries.data) : h('p.muted', `drift over time: ${driftSeries.error}`),
      h('h2', 'Recent predictions'),
      predictions.data?.length ? table(['Time', 'Prediction'], predictions.data.map((r) => h('tr', h('td', when(r.at)), h('td.mono', summary(r.data)))), { 'data-testid': 'predictions' })
        : h('p.muted', predictions.error ?? 'none stored'),
      h('h2', 'Alerts'),
      alerts.data ? (alerts.data.length ? table(['Raised', 'Kind', 'Severity', 'Message', 'Cleared'], alerts.data.map((a) => h('tr',
        h('td', when(a.raisedAt)), h('td', a.kind), h('td', badge(a.severity)), h('td', a.message), h('td', a.clearedAt ? when(a.clearedAt) : 'active'))), { 'data-testid': 'alerts' })
        : h('p.muted', 'no alerts'))
        : deviceAlerts.data?.length ? table(['Time', 'Alert'], deviceAlerts.data.map((r) => h('tr', h('td', when(r.at)), h('td.mono', summary(r.data)))), { 'data-testid': 'alerts' })
          : h('p.muted', 'no alerts'),
      h('h2', 'Audit trail'),
      audit.data?.length ? table(['Time', 'Who', 'What', 'Subject', 'Details'], audit.data.slice(-50).reverse().map((a) => h('tr',
        h('td', when(a.at)), h('td', a.actor), h('td', a.action), h('td', a.subject), h('td', a.details))), { 'data-testid': 'audit' })
        : h('p.muted', audit.error ?? 'nothing yet'));
    main.dataset.rendered = 'device';
    performance.mark('edgeml:rendered'); // for the benchmark's breakdown (Performance panel, performance.getEntriesByType('mark'))
  }

  await Promise.all([loadCharts(), loadRest()]);
  // The facts follow every event of this device; the charts (a day of history can be 17,280 reports) at most every 5 s,
  // and every 15 s when the hub is polled.
  const facts_ = throttle(loadRest, 1000);
  const chartsOnEvent = throttle(loadCharts, 5000);
  const chartsOnPoll = throttle(loadCharts, 15000);
  return onLive((kind, data) => {
    if (kind === 'poll') {
      facts_();
      chartsOnPoll();
    } else if (data && data.device === id) {
      facts_();
      if (kind === 'health') chartsOnEvent();
    }
  });
}

function summary(data) {
  const s = JSON.stringify(data ?? null);
  return s.length > 160 ? `${s.slice(0, 157)}…` : s;
}
