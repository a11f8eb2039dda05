// Models: the registry (name, version, size, signer, who pushed it, when) and where each version runs.
import { api } from '../api.js';
import { bytes, h, mount, table, when } from '../ui.js';

export async function render(main) {
  const [models, devices] = await Promise.all([api('/api/models'), api('/api/devices')]);
  const running = new Map();
  for (const d of devices) if (d.model) running.set(`${d.model}@${d.modelVersion}`, (running.get(`${d.model}@${d.modelVersion}`) ?? 0) + 1);
  mount(main, h('h1', 'Models'),
    models.length ? table(['Name', 'Version', 'Size', 'Signed by (key)', 'Pushed by', 'Pushed', 'Runs on', 'SHA-256'], models.map((m) => h('tr',
      h('td', m.name), h('td', m.version), h('td.n', bytes(m.sizeBytes)), h('td.mono', m.keyId || 'unsigned'), h('td', m.pushedBy), h('td', when(m.pushedAt)),
      h('td.n', h('a', { href: `#/fleet?model=${encodeURIComponent(`${m.name}@${m.version}`)}` }, `${running.get(`${m.name}@${m.version}`) ?? 0} devices`)),
      h('td.mono', { title: m.sha256 }, m.sha256.slice(0, 12)))), { 'data-testid': 'models' })
      : h('p.muted', 'The registry is empty: push a model with ', h('code', 'edgeml model push FILE.edgepkg'), '.'));
  main.dataset.rendered = 'models';
}
