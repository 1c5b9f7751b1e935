// Sagas are built (crates/saga) but not yet run by the control plane: this page says so
// rather than showing an empty list that would look like "no sagas".

import { h } from './dom.js';

export const title = 'Sagas';

export function mount(main) {
  main.append(
    h('h1', {}, 'Sagas'),
    h('div', { class: 'empty' },
      h('p', {}, 'Sagas are not wired into the control plane yet.'),
      h('p', {}, 'Once the orchestrator runs in ', h('code', {}, 'flotilla up'),
        ', this page will list sagas with filters and show each one\u2019s steps, attempts and compensations.')),
  );
  return { tick() {} };
}
