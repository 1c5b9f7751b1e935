// A hand-drawn SVG sparkline: a line and a filled area over the kept history. A gap (null)
// breaks the line, so "no traffic" is not drawn as zero latency.

import { svg } from './dom.js';

const W = 100;
const H = 30;

export function sparkline(values, label) {
  const finite = values.filter((v) => v != null && Number.isFinite(v));
  const max = Math.max(...finite, 0) || 1;
  const step = values.length > 1 ? W / (values.length - 1) : W;
  const parts = [];
  let run = [];
  values.forEach((v, i) => {
    if (v == null || !Number.isFinite(v)) {
      if (run.length) parts.push(run);
      run = [];
      return;
    }
    run.push([i * step, H - 1 - (v / max) * (H - 2)]);
  });
  if (run.length) parts.push(run);
  const shapes = parts.flatMap((p) => {
    const pts = p.length === 1 ? [p[0], [p[0][0] + 0.5, p[0][1]]] : p;
    const line = pts.map(([x, y]) => `${x.toFixed(2)},${y.toFixed(2)}`).join(' ');
    const area = `${pts[0][0].toFixed(2)},${H} ${line} ${pts[pts.length - 1][0].toFixed(2)},${H}`;
    return [svg('polygon', { class: 'spark-area', points: area }), svg('polyline', { class: 'spark-line', points: line })];
  });
  return svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label }, shapes);
}
