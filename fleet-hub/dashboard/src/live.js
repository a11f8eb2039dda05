// Live updates: the hub's Server-Sent Events (GET /api/events: presence, health, alert, rollout, desired). Where the
// hub has none (an older hub answers 404, the stream cannot be opened), the pages are polled every few seconds instead.

const listeners = new Set();
let source = null;
let timer = null;
let mode = 'off';
const POLL_MS = 3000;
// dropped: the hub let this page fall behind; it reconnects by itself, and the pages reload what they show.
const kinds = ['presence', 'health', 'alert', 'rollout', 'desired', 'dropped'];

/** fn(kind, data) for every event; kind 'poll' when polling. Returns the unsubscribe function. */
export function onLive(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(kind, data) {
  for (const fn of [...listeners]) {
    try {
      fn(kind, data);
    } catch (e) {
      console.error('live update failed', e);
    }
  }
}

function showMode(m) {
  mode = m;
  const el = document.getElementById('live');
  if (el) {
    el.textContent = m === 'sse' ? '● live' : m === 'poll' ? '● polling' : '';
    el.dataset.mode = m;
  }
}

function poll() {
  stopPolling();
  showMode('poll');
  timer = setInterval(() => emit('poll', null), POLL_MS);
}

function stopPolling() {
  if (timer) clearInterval(timer);
  timer = null;
}

export function startLive() {
  stopLive();
  if (typeof EventSource === 'undefined') {
    poll();
    return;
  }
  let opened = false;
  source = new EventSource('/api/events');
  source.onopen = () => {
    opened = true;
    stopPolling();
    showMode('sse');
  };
  for (const kind of kinds) {
    source.addEventListener(kind, (e) => {
      let data = null;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      emit(kind === 'dropped' ? 'poll' : kind, data);
    });
  }
  source.onerror = () => {
    // CLOSED: the hub refused the stream (no such endpoint, signed out): poll instead. CONNECTING: the browser retries
    // by itself; poll meanwhile so nothing is missed, and stop once it is back.
    if (!source || source.readyState === EventSource.CLOSED) {
      source = null;
      poll();
    } else if (opened && !timer) {
      poll();
    }
  };
}

export function stopLive() {
  if (source) source.close();
  source = null;
  stopPolling();
  showMode('off');
}

export const liveMode = () => mode;
