// Saga instances with filters by definition and status, and one instance's timeline: each
// step's attempts, results and errors, and the compensations that undid it.

import { get, seg } from './api.js';
import { badge, empty, h, region, table } from './dom.js';
import * as fmt from './format.js';

export const title = 'Sagas';

const STATUSES = ['running', 'compensating', 'completed', 'compensated', 'stuck'];

function sagaHref(id) {
  return `#/sagas?${new URLSearchParams({ id })}`;
}

function listTable(sagas) {
  if (!sagas.length) {
    return empty('No saga instances match — start one with ', h('code', {}, 'flotilla sagas start <name> --data \'{…}\''), '.');
  }
  const rows = sagas.map((s) => h('tr', { 'data-saga': s.id },
    h('td', {}, h('a', { href: sagaHref(s.id) }, h('code', {}, s.id))),
    h('td', {}, `${s.definition} v${s.version}`),
    h('td', {}, badge(s.status)),
    h('td', {}, s.current_step ?? '–'),
    h('td', {}, fmt.time(s.started_at)),
    h('td', {}, fmt.time(s.finished_at))));
  return table(['Instance', 'Saga', 'Status', 'Current step', 'Started', 'Finished'], rows);
}

// One line of the timeline: the event's type, when, and what it carried besides its kind.
function entry(e) {
  const detail = { ...e.event };
  delete detail.type;
  return h('li', { class: 'event', 'data-type': e.type },
    h('h3', {}, e.type),
    h('div', { class: 'meta' }, h('span', {}, `#${fmt.count(e.version)}`), h('time', { datetime: e.recorded_at }, fmt.time(e.recorded_at))),
    Object.keys(detail).length ? h('pre', { class: 'json' }, fmt.json(detail)) : null);
}

function detailView(s) {
  if (!s) return null;
  const steps = table(['Step', 'Forward', ['Attempts', true], 'Error', 'Compensation', ['Attempts', true], 'Error'],
    (s.steps || []).map((st) => h('tr', { 'data-step': st.name },
      h('td', {}, st.name), h('td', {}, phase(st.phase)), h('td', { class: 'num' }, fmt.count(st.attempts)),
      h('td', { class: 'output' }, st.error ?? '–'),
      h('td', {}, phase(st.compensation)), h('td', { class: 'num' }, fmt.count(st.compensation_attempts)),
      h('td', { class: 'output' }, st.compensation_error ?? '–'))));
  return [
    h('h2', {}, 'Instance ', h('code', {}, s.id), ' ', badge(s.status)),
    h('p', { class: 'muted' }, `${s.definition} v${s.version}, started ${fmt.time(s.started_at)}`),
    // The trace the saga's step spans join: paste it into the tracing UI.
    s.trace_id ? h('p', { class: 'muted', 'data-trace-id': s.trace_id }, 'Trace ', h('code', {}, s.trace_id)) : null,
    steps,
    h('h2', {}, 'Timeline'),
    h('ol', { class: 'list panel', 'aria-label': 'Timeline' }, (s.timeline || []).map(entry)),
  ];
}

// A step's phase is `{ "phase": "waiting", "retry_at": … }`: the name, and when it retries.
function phase(p) {
  if (p == null) return '–';
  return [badge(p.phase ?? p), p.retry_at ? h('div', { class: 'muted' }, `retry ${fmt.time(p.retry_at)}`) : null];
}

function select(label, options, onChange) {
  const el = h('select', { onchange: (e) => onChange(e.target.value) },
    h('option', { value: '' }, `any ${label}`), options.map((o) => h('option', { value: o }, o)));
  return h('label', {}, `${label[0].toUpperCase()}${label.slice(1)} `, el);
}

export function mount(main, ctx) {
  main.append(h('h1', {}, 'Sagas'));
  if (!ctx.platform.sagas) {
    main.append(empty('The saga orchestrator does not run in this control plane (it runs with ', h('code', {}, 'flotilla up'), ').'));
    return { tick() {} };
  }
  const filter = { name: '', status: '' };
  const names = (ctx.platform.sagas.definitions || []).map((d) => d.name);
  let id = null;
  const list = region(h('section', { 'aria-label': 'Saga instances' }));
  const detail = region(h('section', { 'aria-label': 'Saga instance' }));
  main.append(
    h('div', { class: 'toolbar' },
      select('saga', names, (v) => { filter.name = v; ctx.refresh(); }),
      select('status', STATUSES, (v) => { filter.status = v; ctx.refresh(); })),
    list.el, detail.el);
  return {
    route(params) { id = params.get('id'); },
    async tick() {
      const q = new URLSearchParams();
      if (filter.name) q.set('name', filter.name);
      if (filter.status) q.set('status', filter.status);
      list.show((await get(`/api/v1/sagas?${q}`)).sagas, listTable);
      detail.show(id ? await get(`/api/v1/sagas/${seg(id)}`) : null, detailView);
    },
  };
}
