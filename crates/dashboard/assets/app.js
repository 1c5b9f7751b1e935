// The shell: picks the page from the URL's fragment (#/bus, #/events?stream=x), polls every
// two seconds while the tab is visible, and says when the control plane cannot be reached.

import { get } from './api.js';
import { Sampler } from './metrics.js';
import * as overview from './page-overview.js';
import * as services from './page-services.js';
import * as gateway from './page-gateway.js';
import * as bus from './page-bus.js';
import * as events from './page-events.js';
import * as sagas from './page-sagas.js';

const PAGES = { overview, services, gateway, bus, events, sagas };
const POLL_MS = 2000;

const main = document.getElementById('main');
const status = document.getElementById('status');
let ctx;
let current = null;
let timer = null;
let ticking = false;
let again = false;

function location() {
  const hash = window.location.hash;
  if (!hash.startsWith('#/')) return null;
  const [name, query] = hash.slice(2).split('?');
  return { name: PAGES[name] ? name : 'overview', params: new URLSearchParams(query || '') };
}

function show(where) {
  const page = PAGES[where.name];
  document.title = `${page.title} · Flotilla`;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === where.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (current?.name !== where.name) {
    // Busy until the new page's first data arrives (assistive technology, and tests, wait on it).
    main.setAttribute('aria-busy', 'true');
    main.replaceChildren();
    current = { name: where.name, view: page.mount(main, ctx) };
  }
  current.view.route?.(where.params);
}

function setStatus(text, error) {
  status.textContent = text;
  status.classList.toggle('error', Boolean(error));
}

async function tick() {
  clearTimeout(timer);
  if (ticking) {
    again = true; // a page change during a poll: poll again as soon as this one ends
    return;
  }
  ticking = true;
  again = false;
  try {
    await ctx.sampler.sample();
    const view = current?.view;
    await view?.tick();
    if (view === current?.view) main.removeAttribute('aria-busy');
    setStatus(`Updated ${new Date().toLocaleTimeString()}`, false);
  } catch (e) {
    setStatus(`Cannot read the control plane (${e.message}); retrying`, true);
  } finally {
    ticking = false;
    if (again) tick();
    else if (!document.hidden) timer = setTimeout(tick, POLL_MS);
  }
}

async function start() {
  try {
    ctx = { platform: await get('/api/v1/platform'), refresh: tick };
  } catch (e) {
    setStatus(`Cannot read the control plane (${e.message})`, true);
    setTimeout(start, POLL_MS);
    return;
  }
  ctx.sampler = new Sampler(ctx.platform);
  window.addEventListener('hashchange', () => {
    const where = location();
    if (where) { show(where); tick(); }
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
  show(location() || { name: 'overview', params: new URLSearchParams() });
  tick();
}

start();
