// The gateway's routes with their live traffic (from /metrics, per poll), the upstream
// instances with their circuit-breaker state (admin API), and the response cache.

import { get } from './api.js';
import { badge, empty, h, num, region, table } from './dom.js';
import * as fmt from './format.js';

export const title = 'Gateway';

function matchText(c) {
  const parts = [];
  if (c.methods?.length) parts.push(c.methods.join(','));
  if (c.hosts?.length) parts.push(c.hosts.join(','));
  parts.push(c.path ?? (c.prefix != null ? `${c.prefix}*` : '*'));
  return parts.join(' ');
}

function routesTable(data) {
  if (!data.routes.length) {
    return empty('No routes configured — add ', h('code', {}, '[[routes]]'), ' to the file named by ',
      h('code', {}, 'gateway.routes_file'), ' (it reloads on change).');
  }
  const rows = data.routes.map((r) => {
    const m = data.metrics[r.name] || {};
    return h('tr', {},
      h('td', {}, r.name),
      h('td', {}, h('code', {}, matchText(r.config))),
      h('td', {}, r.config.upstream),
      num(fmt.rate(m.rate)),
      num(fmt.seconds(m.p50)),
      num(fmt.seconds(m.p99)),
      num(fmt.percent(m.errorRate)),
      num(r.config.cache ? fmt.percent(m.cacheHitRatio) : 'off'),
      num(fmt.count(m.requests)));
  });
  const headers = ['Route', 'Match', 'Upstream', ['Rate', true], ['p50', true], ['p99', true],
    ['Errors (5xx)', true], ['Cache hits', true], ['Requests', true]];
  return table(headers, rows);
}

function upstreamsTable(list) {
  if (!list.length) return empty('No upstreams configured.');
  const rows = list.flatMap((u) => {
    if (!u.instances.length) {
      return [h('tr', {}, h('td', {}, u.name), h('td', { colspan: 4, class: 'muted' }, 'no instance available'))];
    }
    return u.instances.map((i) => h('tr', {},
      h('td', {}, u.name), h('td', {}, h('code', {}, i.id)), h('td', {}, `${i.scheme}://${i.address}`),
      h('td', {}, badge(i.breaker)), num(fmt.count(i.consecutive_failures))));
  });
  return table(['Upstream', 'Instance', 'Address', 'Breaker', ['Consecutive failures', true]], rows);
}

function cacheCards(c) {
  const lookups = c.hits + c.misses;
  const item = (label, value) => h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
  return h('div', { class: 'cards' },
    item('Hit ratio', fmt.percent(lookups ? c.hits / lookups : null)),
    item('Entries', fmt.count(c.entries)),
    item('Stored', `${fmt.count(c.bytes / 1024)} KiB of ${fmt.count(c.max_bytes / 1048576)} MiB`),
    item('Collapsed requests', fmt.count(c.collapsed)));
}

export function mount(main, ctx) {
  main.append(h('h1', {}, 'Gateway'));
  if (!ctx.platform.components.gateway) {
    main.append(empty('The gateway does not run in this control plane (it runs with ', h('code', {}, 'flotilla up'), ').'));
    return { tick() {} };
  }
  const routes = region(h('section'));
  const upstreams = region(h('section'));
  const cache = region(h('section'));
  main.append(h('h2', {}, 'Routes'), routes.el, h('h2', {}, 'Upstreams'), upstreams.el,
    h('h2', {}, 'Response cache'), cache.el);
  return {
    async tick() {
      const [r, u, c] = await Promise.all(['routes', 'upstreams', 'cache'].map((p) => get(`/api/v1/gateway/${p}`)));
      routes.show({ routes: r.routes, metrics: ctx.sampler.routes }, routesTable);
      upstreams.show(u.upstreams, upstreamsTable);
      cache.show(c, cacheCards);
    },
  };
}
