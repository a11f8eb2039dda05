// The dashboard: hash routes (#/fleet, #/device/ID, #/rollouts, #/rollouts/ID, #/models, #/alerts), a session from
// the hub's cookie, live updates. Each page module exports render(main, params) → optional cleanup function.
import './style.css';
import { session, signOut, whenSignedOut, whoAmI } from './api.js';
import { startLive, stopLive } from './live.js';
import { h, mount, problem } from './ui.js';
import * as signin from './pages/signin.js';
import * as fleet from './pages/fleet.js';
import * as device from './pages/device.js';
import * as rollouts from './pages/rollouts.js';
import * as models from './pages/models.js';
import * as alerts from './pages/alerts.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let cleanup = null;

function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, '').split('?')[0].split('/').map(decodeURIComponent);
  return { page: page || 'fleet', params: rest };
}

async function show() {
  if (cleanup) cleanup();
  cleanup = null;
  delete main.dataset.rendered; // each page sets it once it has drawn (tests and screenshots wait for it)
  if (!session.current) {
    top.hidden = true;
    stopLive();
    cleanup = signin.render(main, { onSignedIn: signedIn }) ?? null;
    return;
  }
  top.hidden = false;
  document.getElementById('who').textContent = `${session.current.name || 'signed in'} · ${session.current.role}`;
  const { page, params } = route();
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('on', a.dataset.nav === page || (page === 'device' && a.dataset.nav === 'fleet'));
  const pages = { fleet, device, rollouts, models, alerts };
  const module = pages[page];
  if (!module) {
    mount(main, problem(`no page '${page}'`), h('a', { href: '#/fleet' }, 'to the fleet'));
    return;
  }
  try {
    cleanup = (await module.render(main, params)) ?? null;
  } catch (e) {
    mount(main, problem(e));
  }
}

function signedIn() {
  startLive();
  if (!location.hash || location.hash === '#/signin') location.hash = '#/fleet';
  else show();
}

whenSignedOut(() => show());
window.addEventListener('hashchange', show);
document.getElementById('signout').addEventListener('click', async () => {
  try {
    await signOut();
  } finally {
    stopLive();
    show();
  }
});

try {
  await whoAmI();
  if (session.current) startLive();
  await show();
} catch (e) {
  mount(main, problem(e));
}
