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
let view = null;

function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, '').split('?')[0].split('/').map(decodeURIComponent);
  return { page: page || 'fleet', params: rest };
}

// Each showing renders into a view of its own (display: contents, so the layout is main's): what the page shown before
// left behind (a throttled refresh still due, a request still on its way) can only draw into its old view, which is no
// longer in the page. The view's data-rendered (set by a page once it has drawn; tests and screenshots wait for it) is
// mirrored on main while the view is the current one.
function newView() {
  const mine = h('div.view');
  view = mine;
  delete main.dataset.rendered;
  mount(main, mine);
  new MutationObserver(() => {
    if (view !== mine) return;
    if (mine.dataset.rendered) main.dataset.rendered = mine.dataset.rendered;
    else delete main.dataset.rendered;
  }).observe(mine, { attributes: true, attributeFilter: ['data-rendered'] });
  return mine;
}

async function show() {
  if (cleanup) cleanup();
  cleanup = null;
  const mine = newView();
  if (!session.current) {
    top.hidden = true;
    stopLive();
    cleanup = signin.render(mine, { onSignedIn: signedIn }) ?? null;
    return;
  }
  top.hidden = false;
  document.getElementById('who').textContent = `${session.current.name || 'signed in'} · ${session.current.role}`;
  const { page, params } = route();
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('on', a.dataset.nav === page || (page === 'device' && a.dataset.nav === 'fleet'));
  const pages = { fleet, device, rollouts, models, alerts };
  const module = pages[page];
  if (!module) {
    mount(mine, problem(`no page '${page}'`), h('a', { href: '#/fleet' }, 'to the fleet'));
    return;
  }
  let done = null;
  try {
    done = (await module.render(mine, params)) ?? null;
  } catch (e) {
    mount(mine, problem(e));
  }
  // Another page was asked for while this one was drawing: this one's live updates stop at once (they would keep
  // refreshing a view nobody sees); the other page's cleanup is already in place.
  if (view === mine) cleanup = done;
  else if (done) done();
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
