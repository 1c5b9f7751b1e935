// Every registered instance with its health, check and last output, tags, metadata and drain
// state, per service.

import { get, seg } from './api.js';
import { badge, empty, h, region, table } from './dom.js';
import * as fmt from './format.js';

export const title = 'Services';

function checkText(check) {
  if (!check) return 'none';
  const every = check.interval ? ` every ${check.interval}` : '';
  switch (check.type) {
    case 'http': return `HTTP ${check.method || 'GET'} ${check.path || ''}${every}`;
    case 'tcp': return `TCP${every}`;
    case 'ttl': return `TTL ${check.ttl}`;
    default: return String(check.type);
  }
}

function drainText(drain) {
  if (!drain) return '–';
  return [badge(drain.kind), drain.reason ? ` ${drain.reason}` : ''];
}

function metadata(meta) {
  const entries = Object.entries(meta || {});
  return entries.length ? entries.map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`)) : '–';
}

function instanceRow(i) {
  return h('tr', { 'data-instance': i.id },
    h('td', {}, h('code', {}, i.id)),
    h('td', {}, `${i.scheme}://${i.address}:${i.port}`),
    h('td', {}, i.version || '–'),
    h('td', { class: 'status' }, badge(i.status)),
    h('td', {}, checkText(i.check), h('div', { class: 'muted' },
      i.last_check_unix_ms ? `last ${fmt.time(i.last_check_unix_ms)}` : '')),
    h('td', { class: 'output' }, i.output || '–'),
    h('td', {}, (i.tags || []).length ? i.tags.map((t) => h('span', { class: 'tag' }, t)) : '–'),
    h('td', {}, metadata(i.metadata)),
    h('td', {}, drainText(i.drain)));
}

function serviceSection(s) {
  const head = h('h2', { id: `svc-${s.service}` }, s.service);
  if (!s.instances.length) return [head, empty('No instances of this service are registered.')];
  const headers = ['Instance', 'Address', 'Version', 'Status', 'Check', 'Output', 'Tags', 'Metadata', 'Drain'];
  return [head, table(headers, s.instances.map(instanceRow))];
}

function render(data) {
  if (!data.services.length) {
    return empty('No services registered yet — start one with the SDK (set ',
      h('code', {}, 'platform.url'), ') or register one: ',
      h('code', {}, 'POST /api/v1/registry/instances'), '.');
  }
  const filter = data.only ? h('p', {}, `Showing ${data.only}. `, h('a', { href: '#/services' }, 'Show every service')) : null;
  return [filter, ...data.services.flatMap(serviceSection)];
}

export function mount(main) {
  const body = region(h('div'));
  let only = null;
  main.append(h('h1', {}, 'Services'), body.el);
  return {
    route(params) { only = params.get('name'); },
    async tick() {
      const names = (await get('/api/v1/registry/services')).map((s) => s.name)
        .filter((n) => !only || n === only);
      const services = await Promise.all(names.map((n) => get(`/api/v1/registry/services/${seg(n)}?status=any`)));
      body.show({ only, services }, render);
    },
  };
}
