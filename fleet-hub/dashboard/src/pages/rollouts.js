// Rollouts: the list, and one rollout's waves, gates with their measured figures and each device's phase, live while
// it runs. Operator: start (the options of `edgeml rollout start`), pause/resume, halt (abort), roll a group back.
import { api, isOperator, post } from '../api.js';
import { onLive } from '../live.js';
import { badge, confirmAction, facts, h, mount, num, problem, table, throttle, when } from '../ui.js';

function startForm(models, done) {
  const field = (name, label, placeholder, hint) => h('label', label, h('input', { name, placeholder, 'data-testid': `start-${name}` }), hint ? h('small.muted', hint) : null);
  const message = h('div');
  const model = h('select', { name: 'model', 'data-testid': 'start-model' }, models.map((m) => h('option', { value: `${m.name}@${m.version}` }, `${m.name}@${m.version}`)));
  const form = h('form.card.grid', {
    onsubmit: async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const text = (k) => (f.get(k) || '').toString().trim() || undefined;
      const list = (k) => text(k)?.split(',').map((s) => s.trim()).filter(Boolean);
      try {
        const r = await post('/api/rollouts', {
          model: model.value, group: text('group'), devices: list('devices'), waves: text('waves'), gates: list('gates'), soak: text('soak'), watch: text('watch'),
          offlineTimeout: text('offlineTimeout'),
        });
        done(r.id);
      } catch (err) {
        mount(message, problem(err));
      }
    },
  },
  h('h2', 'Start a rollout'),
  h('label', 'Model', model),
  field('group', 'Group', 'line-1', 'or devices below'),
  field('devices', 'Devices', 'dev-1,dev-2'),
  field('waves', 'Waves', '10%,50%,100%'),
  field('gates', 'Gates', 'agreement>=0.95,latency<=1.2x'),
  field('soak', 'Soak', '10m'),
  field('watch', 'Watch', '30s'),
  field('offlineTimeout', 'Offline timeout', '10m'),
  h('button', { type: 'submit', 'data-testid': 'start-rollout' }, 'Start'), message);
  return form;
}

/** The list; the operator's forms are built once (a live refresh redraws only the table, never what is being typed). */
async function list(main, view) {
  const rollouts = await api('/api/rollouts');
  const table_ = rollouts.length ? table(['Rollout', 'Model', 'Target', 'State', 'Wave', 'Started', 'By'], [...rollouts].reverse().map((r) => h('tr',
    h('td', h('a', { href: `#/rollouts/${encodeURIComponent(r.id)}` }, r.id)), h('td', `${r.model}@${r.version}`), h('td', r.target), h('td', badge(r.state)),
    h('td.n', `${r.wave + 1}/${r.waves.length}`), h('td', when(r.createdAt)), h('td', r.createdBy))), { 'data-testid': 'rollouts' })
    : h('p.muted', 'No rollout yet.');
  if (view.table) {
    mount(view.table, table_);
    return;
  }
  view.table = h('div', table_);
  const models = isOperator() ? await api('/api/models') : [];
  const rollbackMsg = h('div');
  const group = h('input', { placeholder: 'group', 'data-testid': 'rollback-group' });
  mount(main, h('h1', 'Rollouts'), view.table,
    isOperator() ? h('div.two', startForm(models, (id) => { location.hash = `#/rollouts/${encodeURIComponent(id)}`; }),
      h('section.card', h('h2', 'Roll a group back'), h('p.muted', 'Every device of the group returns to the model in its other slot.'), h('div.row', group,
        h('button.danger', {
          type: 'button', 'data-testid': 'rollback',
          onclick: async () => {
            if (!group.value.trim() || !confirmAction(`Roll every device of ${group.value.trim()} back to its previous model?`)) return;
            try {
              const sent = await post('/api/rollback', { group: group.value.trim() });
              mount(rollbackMsg, h('p.ok', `rollback sent to ${sent.length} devices`));
            } catch (e) {
              mount(rollbackMsg, problem(e));
            }
          },
        }, 'Roll back…')), rollbackMsg)) : null);
  main.dataset.rendered = 'rollouts';
}

async function detail(main, id) {
  const r = await api(`/api/rollouts/${encodeURIComponent(id)}`);
  const message = h('div');
  const control = (action, label, cls = '') => h(`button${cls}`, {
    type: 'button', 'data-testid': `rollout-${action}`,
    onclick: async () => {
      if (action === 'abort' && !confirmAction(`Halt rollout ${r.id}? Devices already updated keep the new model (roll the group back to undo).`)) return;
      try {
        await post(`/api/rollouts/${encodeURIComponent(r.id)}/${action}`);
        await detail(main, id);
      } catch (e) {
        mount(message, problem(e));
      }
    },
  }, label);
  const phases = {};
  for (const d of r.devices) phases[d.phase] = (phases[d.phase] ?? 0) + 1;
  mount(main, h('p', h('a', { href: '#/rollouts' }, '‹ Rollouts')),
    h('h1', `Rollout ${r.id} `, badge(r.state, 'rollout-state')),
    h('div.two',
      h('section.card', facts([
        ['Model', `${r.model}@${r.version}`], ['Target', r.target], ['Waves', r.waves.map((w) => `${num(w * (w <= 1 ? 100 : 1), 0)}%`).join(' → ')],
        ['Current wave', `${r.wave + 1} (${r.stage ?? '—'})`], ['Gates', r.gates.map((g) => `${g.metric}${g.op}${g.threshold}${g.relative ? 'x' : ''}`).join(', ') || '—'],
        ['Soak', `${r.soakSeconds} s`], ['Watch', `${r.watchSeconds} s`], ['Reason', r.reason], ['Started', `${when(r.createdAt)} by ${r.createdBy}`], ['Ended', r.endedAt ? when(r.endedAt) : null],
        ['Phases', Object.entries(phases).map(([p, n]) => `${p}: ${n}`).join(', ')],
      ])),
      h('section.card', h('h2', 'Waves and gates'), r.results.length ? table(['Wave', 'Devices', 'Reported', 'Offline', 'Gates', 'Outcome'], r.results.map((w) => h('tr',
        h('td.n', w.wave + 1), h('td.n', w.devices), h('td.n', w.reported), h('td.n', w.offline),
        h('td', w.gates.map((g) => `${g.gate} = ${num(g.value, 3)}${g.passed === false ? ' ✗' : g.passed ? ' ✓' : ''}`).join('; ')), h('td', badge(w.outcome)))), { 'data-testid': 'waves' })
        : h('p.muted', 'no wave finished yet'))),
    isOperator() && (r.state === 'running' || r.state === 'paused')
      ? h('div.row.actions', r.state === 'running' ? control('pause', 'Pause') : control('resume', 'Resume'), control('abort', 'Halt…', '.danger')) : null,
    message,
    h('h2', 'Devices'),
    table(['Device', 'Wave', 'Phase', 'From', 'Agreement', 'Latency ×', 'Reason', 'Updated'], r.devices.map((d) => h('tr', { 'data-device': d.id },
      h('td', h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)), h('td.n', d.wave + 1), h('td', badge(d.phase)), h('td', d.from ?? '—'),
      h('td.n', num(d.shadow?.agreement, 3)), h('td.n', num(d.shadow?.latencyRatio, 2)), h('td', d.reason ?? ''), h('td', when(d.updatedAt)))), { 'data-testid': 'rollout-devices' }));
  main.dataset.rendered = 'rollout';
}

export async function render(main, [id]) {
  const view = {};
  const load = () => (id ? detail(main, id) : list(main, view)).catch((e) => mount(main, problem(e)));
  await load();
  const later = throttle(load, 1000);
  return onLive((kind) => {
    if (kind === 'rollout' || kind === 'desired' || kind === 'poll') later();
  });
}
