// Numbers, durations and times for people: grouped digits, compact big numbers, the viewer's
// own locale and time zone.

const grouped = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function count(n) {
  if (n == null || Number.isNaN(n)) return '–';
  return Math.abs(n) >= 1e6 ? compact.format(n) : grouped.format(n);
}

export function rate(perSecond) {
  if (perSecond == null || Number.isNaN(perSecond)) return '–';
  return `${perSecond >= 100 ? count(perSecond) : oneDecimal.format(perSecond)}/s`;
}

export function percent(ratio) {
  if (ratio == null || Number.isNaN(ratio)) return '–';
  return `${oneDecimal.format(ratio * 100)} %`;
}

export function seconds(s) {
  if (s == null || Number.isNaN(s)) return '–';
  if (s < 1e-3) return `${oneDecimal.format(s * 1e6)} µs`;
  if (s < 1) return `${oneDecimal.format(s * 1e3)} ms`;
  return `${oneDecimal.format(s)} s`;
}

export function time(value) {
  if (value == null || value === '') return '–';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : dateTime.format(d);
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}
