// The platform at a glance: services and instance health, gateway traffic, bus and event
// store throughput, each with a sparkline of the history kept in this tab.

import { get, seg } from './api.js';
import { sparkline } from './chart.js';
import { badge, empty, h, num, region, table } from './dom.js';
import * as fmt from './format.js';

export const title = 'Overview';

const HEALTH = ['passing', 'warning', 'critical', 'draining'];

function card(label, value, sub, chart) {
  return h('div', { class: 'card' },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, value),
    sub ? h('div', { class: 'sub' }, sub) : null,
    chart);
}

function healthCard(instances) {
  const total = HEALTH.reduce((n, s) => n + (instances[s] || 0), 0);
  const parts = HEALTH.filter((s) => instances[s]).map((s) => h('span', {}, badge(s), ' ', fmt.count(instances[s]), ' '));
  return card('Instances', fmt.count(total), parts.length ? parts : 'none registered');
}

const SAGA_STATES = ['running', 'compensating', 'completed', 'compensated', 'stuck'];

function sagaCard(sagas) {
  const by = {};
  for (const s of sagas) by[s.status] = (by[s.status] || 0) + 1;
  const inFlight = (by.running || 0) + (by.compensating || 0);
  const parts = SAGA_STATES.filter((s) => by[s]).map((s) => h('span', {}, badge(s), ' ', fmt.count(by[s]), ' '));
  return card('Sagas in flight', fmt.count(inFlight), parts.length ? parts : 'none started');
}

function last(values) {
  return values.length ? values[values.length - 1] : null;
}

function trend(sampler, key, label, format) {
  const values = sampler.series(key);
  const span = values.length * 2;
  return card(label, format(last(values)), span < 120 ? `last ${span} s` : `last ${Math.round(span / 60)} min`,
    sparkline(values, `${label} over the last minutes`));
}

function charts(ctx) {
  const s = ctx.sampler;
  const c = ctx.platform.components;
  const out = [healthCard(s.latest?.instances || {})];
  if (c.gateway) {
    out.push(trend(s, 'reqRate', 'Gateway requests', fmt.rate),
      trend(s, 'errorRate', 'Gateway errors (5xx)', fmt.percent),
      trend(s, 'p50', 'Gateway p50 latency', fmt.seconds),
      trend(s, 'p99', 'Gateway p99 latency', fmt.seconds));
  }
  if (c.bus) out.push(trend(s, 'busRate', 'Bus events published', fmt.rate), trend(s, 'dlq', 'Dead letters', fmt.count));
  if (c.eventstore) out.push(trend(s, 'appendRate', 'Event-store appends', fmt.rate));
  if (ctx.platform.sagas) out.push(sagaCard(ctx.sagas || []));
  return h('div', { class: 'cards' }, out);
}

function servicesTable(list) {
  if (!list.length) {
    return empty('No services registered yet — start one with the SDK (set ',
      h('code', {}, 'platform.url'), ') or register one: ',
      h('code', {}, 'POST /api/v1/registry/instances'), '.');
  }
  const rows = list.map((s) => h('tr', {},
    h('td', {}, h('a', { href: `#/services?name=${seg(s.name)}` }, s.name)),
    num(fmt.count(s.instances)),
    num(fmt.count(s.routable)),
    h('td', {}, (s.tags || []).map((t) => h('span', { class: 'tag' }, t)))));
  return table(['Service', ['Instances', true], ['Routable', true], 'Tags'], rows);
}

export function mount(main, ctx) {
  const cards = region(h('section', { 'aria-label': 'Platform figures' }));
  const services = region(h('section', { 'aria-labelledby': 'ov-services' }));
  main.append(h('h1', {}, 'Overview'), cards.el, h('h2', { id: 'ov-services' }, 'Services'), services.el);
  return {
    async tick() {
      if (ctx.platform.sagas) ctx.sagas = (await get('/api/v1/sagas?limit=1000')).sagas;
      // History changes every poll: drawn each time, it holds no focusable element.
      cards.el.replaceChildren(charts(ctx));
      services.show(await get('/api/v1/registry/services'), servicesTable);
    },
  };
}
