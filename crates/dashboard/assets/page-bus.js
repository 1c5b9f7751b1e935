// Topics, consumer groups with their lag, and the dead-letter queue: inspect an entry, replay
// it to its group, or purge a group's queue (both confirmed first, both need the token when
// one is set).

import { get, seg, write } from './api.js';
import { confirmAction } from './dialogs.js';
import { empty, h, num, region, table } from './dom.js';
import * as fmt from './format.js';

export const title = 'Bus';

function topicsTable(topics) {
  if (!topics.length) return empty('No events published yet — try ', h('code', {}, 'flotilla events publish <topic> --type <type> --data \'{}\''), '.');
  return table(['Topic', ['Published', true]], topics.map((t) => h('tr', {}, h('td', {}, t.name), num(fmt.count(t.published)))));
}

export function mount(main, ctx) {
  main.append(h('h1', {}, 'Bus'));
  if (!ctx.platform.components.bus) {
    main.append(empty('The bus does not run in this control plane (it runs with ', h('code', {}, 'flotilla up'), ').'));
    return { tick() {} };
  }
  const notice = h('div', { role: 'status', 'aria-live': 'polite' });
  const topics = region(h('section'));
  const groups = region(h('section'));
  const dlq = region(h('section'));
  const inspected = new Map(); // dead-letter id -> its full entry, while shown
  let letters = [];

  function say(text, error) {
    notice.replaceChildren(text ? h('p', { class: error ? 'notice error' : 'notice' }, text) : '');
  }

  async function act(confirmText, label, run, done) {
    if (!(await confirmAction(confirmText, label))) return;
    try {
      const result = await run();
      say(done(result));
    } catch (e) {
      say(`${label} failed: ${e.message}`, true);
    }
    ctx.refresh();
  }

  const purge = (g) => act(`Delete every dead letter of group “${g}”? They cannot be recovered.`, 'Purge',
    () => write('POST', `/api/v1/bus/groups/${seg(g)}/dlq/purge`, {}),
    (r) => `Purged ${fmt.count(r?.purged ?? 0)} dead letters of ${g}.`);

  const replay = (d) => act(`Send dead letter ${d.id} (${d.event?.type ?? 'event'}) back to group “${d.group}”?`, 'Replay',
    () => write('POST', `/api/v1/bus/dlq/${seg(d.id)}/replay`),
    () => { inspected.delete(d.id); return `Replayed dead letter ${d.id} to ${d.group}.`; });

  async function inspect(d) {
    if (inspected.has(d.id)) inspected.delete(d.id);
    else inspected.set(d.id, await get(`/api/v1/bus/dlq/${seg(d.id)}`));
    drawDlq();
  }

  function groupsTable(list) {
    if (!list.length) return empty('No consumer groups declared yet — a subscriber declares one, or ', h('code', {}, 'PUT /api/v1/bus/groups/<name>'), '.');
    return table(['Group', 'Pattern', ['Lag (pending, in flight included)', true], ['Dead letters', true], ''],
      list.map((g) => h('tr', {}, h('td', {}, g.spec.name), h('td', {}, h('code', {}, g.spec.pattern)),
        num(fmt.count(g.pending)), num(fmt.count(g.dead_letters)),
        h('td', {}, g.dead_letters ? h('button', { class: 'danger', onclick: () => purge(g.spec.name) }, 'Purge DLQ') : ''))));
  }

  function letterRows(d) {
    const open = inspected.get(d.id);
    const row = h('tr', { 'data-dead-letter': d.id },
      h('td', {}, h('code', {}, d.id)), h('td', {}, d.group), h('td', {}, d.topic), h('td', {}, d.event?.type ?? '–'),
      h('td', {}, d.reason, d.last_error ? h('div', { class: 'muted output' }, d.last_error) : ''),
      num(fmt.count(d.attempts)), h('td', {}, fmt.time(d.dead_lettered_at_ms)),
      h('td', {}, h('div', { class: 'row-actions' },
        h('button', { 'aria-expanded': String(Boolean(open)), onclick: () => inspect(d) }, open ? 'Hide' : 'Inspect'),
        h('button', { onclick: () => replay(d) }, 'Replay'))));
    if (!open) return [row];
    return [row, h('tr', { class: 'detail' }, h('td', { colspan: 8 }, h('pre', { class: 'json' }, fmt.json(open))))];
  }

  function drawDlq() {
    dlq.show({ letters, open: [...inspected.keys()] }, () => {
      if (!letters.length) return empty('The dead-letter queue is empty.');
      return table(['Id', 'Group', 'Topic', 'Type', 'Reason', ['Attempts', true], 'Dead-lettered', ''], letters.flatMap(letterRows));
    });
  }

  main.append(notice, h('h2', {}, 'Topics'), topics.el, h('h2', {}, 'Consumer groups'), groups.el,
    h('h2', {}, 'Dead letters'), dlq.el);
  return {
    async tick() {
      topics.show(ctx.sampler.topics, topicsTable);
      groups.show(ctx.sampler.groups, groupsTable);
      letters = (await get('/api/v1/bus/dlq')).dead_letters;
      for (const id of inspected.keys()) if (!letters.some((d) => d.id === id)) inspected.delete(id);
      drawDlq();
    },
  };
}
