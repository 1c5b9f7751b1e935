// Builds DOM nodes. Text from data only ever becomes a text node or an attribute value, never
// markup, so nothing an API returns can inject HTML or script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function appendAll(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// A part of a page redrawn each poll. It redraws only when its data changed, so a focused
// button or a selection survives the polls that bring nothing new.
export function region(el) {
  let last;
  return {
    el,
    show(data, build) {
      const key = JSON.stringify(data);
      if (key === last) return;
      last = key;
      el.replaceChildren(...[build(data)].flat().filter((n) => n != null));
    },
  };
}

export function empty(...children) {
  return h('div', { class: 'empty' }, ...children);
}

export function table(headers, rows) {
  const head = h('tr', {}, headers.map((t) => {
    const [text, num] = Array.isArray(t) ? t : [t, false];
    return h('th', { scope: 'col', class: num ? 'num' : null }, text);
  }));
  return h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, head), h('tbody', {}, rows)));
}

export function badge(status) {
  const s = String(status ?? 'unknown');
  return h('span', { class: `badge s-${s.replace(/[^a-z_-]/gi, '')}` }, s);
}

export function num(text) {
  return h('td', { class: 'num' }, text);
}
