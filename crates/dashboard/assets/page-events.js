// The event store: streams (paged), a paged browser of one stream's events with their data as
// formatted JSON, and the subscriptions' checkpoints with their lag behind the head.

import { get, seg } from './api.js';
import { empty, h, num, region, table } from './dom.js';
import * as fmt from './format.js';

export const title = 'Event store';

const PAGE = 20;

function streamHref(name, from) {
  const q = new URLSearchParams({ stream: name });
  if (from) q.set('from', String(from));
  return `#/events?${q}`;
}

function eventView(e) {
  return h('article', { class: 'event' },
    h('h3', {}, `#${fmt.count(e.version)} ${e.type}`),
    h('div', { class: 'meta' },
      h('span', {}, `position ${fmt.count(e.position)}`),
      h('time', { datetime: e.recorded_at }, fmt.time(e.recorded_at)),
      h('span', {}, 'id ', h('code', {}, e.id))),
    h('pre', { class: 'json' }, fmt.json(e.data)),
    Object.keys(e.metadata || {}).length ? h('details', {}, h('summary', {}, 'Metadata'), h('pre', { class: 'json' }, fmt.json(e.metadata))) : null);
}

function browser(s) {
  if (!s.stream) return empty('Pick a stream to browse its events.');
  const from = s.from || 1;
  const nav = h('div', { class: 'toolbar' },
    h('strong', {}, s.stream),
    from > 1 ? h('a', { href: streamHref(s.stream, Math.max(1, from - PAGE)) }, '← Earlier') : null,
    s.page.next ? h('a', { href: streamHref(s.stream, s.page.next) }, 'Later →') : null);
  if (!s.page.events.length) return [nav, empty('No events in this range.')];
  return [nav, h('div', { class: 'panel' }, s.page.events.map(eventView))];
}

function streamList(s) {
  if (!s.list.streams.length) {
    return empty('No streams yet — append with the SDK or ', h('code', {}, 'POST /api/v1/streams/<stream>'), '.');
  }
  const items = s.list.streams.map((x) => h('li', {}, h('a', {
    href: streamHref(x.stream), 'aria-current': x.stream === s.stream ? 'true' : null,
  }, x.stream, ' ', h('span', { class: 'muted' }, `v${fmt.count(x.version)}${x.deleted ? ' (deleted)' : ''}`))));
  return h('ul', { class: 'list' }, items);
}

function subscriptionsTable(d) {
  if (!d.subscriptions.length) return empty('No subscription has saved a checkpoint yet.');
  return table(['Subscription', ['Checkpoint', true], ['Lag behind head', true]],
    d.subscriptions.map((x) => h('tr', {}, h('td', {}, x.name), num(fmt.count(x.position)), num(fmt.count(x.lag)))));
}

export function mount(main, ctx) {
  main.append(h('h1', {}, 'Event store'));
  if (!ctx.platform.components.eventstore) {
    main.append(empty('The event store does not run in this control plane (it runs with ', h('code', {}, 'flotilla up'), ').'));
    return { tick() {} };
  }
  const state = { stream: null, from: null, after: [] };
  const streams = region(h('nav', { 'aria-label': 'Streams', class: 'panel' }));
  const events = region(h('section', { 'aria-label': 'Events' }));
  const subs = region(h('section'));
  const more = region(h('div', { class: 'toolbar' }));
  main.append(h('div', { class: 'cols' }, h('div', {}, streams.el, more.el), events.el),
    h('h2', {}, 'Subscriptions and projections'), subs.el);

  function pager(next) {
    more.show({ next, depth: state.after.length }, () => [
      state.after.length ? h('button', { onclick: () => { state.after = []; ctx.refresh(); } }, 'First streams') : null,
      next ? h('button', { onclick: () => { state.after.push(next); ctx.refresh(); } }, 'More streams') : null,
    ]);
  }

  return {
    route(params) {
      state.stream = params.get('stream');
      state.from = Number(params.get('from')) || null;
    },
    async tick() {
      const after = state.after.length ? `&after=${seg(state.after[state.after.length - 1])}` : '';
      const list = await get(`/api/v1/streams?limit=50${after}`);
      streams.show({ list, stream: state.stream }, streamList);
      pager(list.next_after);
      const page = state.stream
        ? await get(`/api/v1/streams/${seg(state.stream)}?from=${state.from || 1}&limit=${PAGE}`)
        : null;
      events.show({ stream: state.stream, from: state.from, page }, browser);
      subs.show(await get('/api/v1/streams/$subscriptions'), subscriptionsTable);
    },
  };
}
