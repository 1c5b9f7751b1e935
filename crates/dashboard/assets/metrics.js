// Reads the control plane's Prometheus /metrics (and the bus's counters) every poll and keeps
// a short history in the browser: the server stores no time series for the dashboard.

import { get } from './api.js';

const KEEP = 90; // points: three minutes at one poll every two seconds
const MIN_WINDOW_MS = 1500; // a page change refreshes at once; a window this short would be noise

export function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

// Like Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q.
export function quantile(q, buckets) {
  const sorted = [...buckets.entries()]
    .map(([le, c]) => [le === '+Inf' ? Infinity : Number(le), c])
    .sort((a, b) => a[0] - b[0]);
  const total = sorted.length ? sorted[sorted.length - 1][1] : 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  let [lowerLe, lowerCount] = [0, 0];
  for (const [le, c] of sorted) {
    if (c >= rank) {
      if (le === Infinity) return lowerLe;
      return lowerLe + (le - lowerLe) * ((rank - lowerCount) / Math.max(c - lowerCount, 1e-12));
    }
    [lowerLe, lowerCount] = [le, c];
  }
  return lowerLe;
}

function routeOf(snap, name) {
  snap.routes[name] ??= { requests: 0, errors: 0, hits: 0, misses: 0, buckets: new Map() };
  return snap.routes[name];
}

const COLLECT = {
  gateway_requests_total(s, x) {
    const r = routeOf(s, x.labels.route);
    r.requests += x.value;
    if (x.labels.class === '5xx') r.errors += x.value;
  },
  gateway_request_duration_seconds_bucket(s, x) {
    const r = routeOf(s, x.labels.route);
    r.buckets.set(x.labels.le, (r.buckets.get(x.labels.le) || 0) + x.value);
  },
  gateway_cache_hits_total(s, x) { routeOf(s, x.labels.route).hits += x.value; },
  gateway_cache_misses_total(s, x) { routeOf(s, x.labels.route).misses += x.value; },
  flotilla_eventstore_appended_events_total(s, x) { s.appended += x.value; },
  flotilla_registry_instances(s, x) { s.instances[x.labels.status] = x.value; },
};

function snapshot(samples) {
  const s = { at: performance.now(), routes: {}, appended: 0, instances: {}, published: 0, dlq: 0 };
  for (const x of samples) COLLECT[x.name]?.(s, x);
  return s;
}

function diffBuckets(now, before) {
  const d = new Map();
  for (const [le, c] of now) d.set(le, c - (before?.get(le) || 0));
  return d;
}

// Rates and percentiles of one route (or all of them) between two snapshots.
function window(now, before, dt) {
  const requests = now.requests - (before?.requests || 0);
  const errors = now.errors - (before?.errors || 0);
  const buckets = diffBuckets(now.buckets, before?.buckets);
  const lookups = now.hits + now.misses;
  return {
    rate: requests / dt,
    errorRate: requests > 0 ? errors / requests : null,
    p50: quantile(0.5, buckets),
    p99: quantile(0.99, buckets),
    cacheHitRatio: lookups > 0 ? now.hits / lookups : null,
    requests: now.requests,
  };
}

function total(snap) {
  const t = { requests: 0, errors: 0, hits: 0, misses: 0, buckets: new Map() };
  for (const r of Object.values(snap.routes)) {
    t.requests += r.requests; t.errors += r.errors; t.hits += r.hits; t.misses += r.misses;
    for (const [le, c] of r.buckets) t.buckets.set(le, (t.buckets.get(le) || 0) + c);
  }
  return t;
}

export class Sampler {
  constructor(platform) {
    this.bus = Boolean(platform?.components?.bus);
    this.history = [];
    this.previous = null;
    this.latest = null;
    this.routes = {};
    this.groups = [];
    this.topics = [];
  }

  async sample() {
    if (this.previous && performance.now() - this.previous.at < MIN_WINDOW_MS) return;
    const snap = snapshot(parse(await get('/metrics')));
    if (this.bus) {
      const [topics, groups] = await Promise.all([get('/api/v1/bus/topics'), get('/api/v1/bus/groups')]);
      this.topics = topics.topics;
      this.groups = groups.groups;
      snap.published = this.topics.reduce((n, t) => n + t.published, 0);
      snap.dlq = this.groups.reduce((n, g) => n + g.dead_letters, 0);
    }
    this.record(snap);
  }

  record(snap) {
    const prev = this.previous;
    this.previous = snap;
    this.latest = snap;
    if (!prev) return;
    const dt = Math.max((snap.at - prev.at) / 1000, 0.001);
    const all = window(total(snap), total(prev), dt);
    this.routes = {};
    for (const [name, r] of Object.entries(snap.routes)) this.routes[name] = window(r, prev.routes[name], dt);
    this.history.push({
      reqRate: all.rate, errorRate: all.errorRate, p50: all.p50, p99: all.p99,
      busRate: this.bus ? Math.max(snap.published - prev.published, 0) / dt : null,
      dlq: this.bus ? snap.dlq : null,
      appendRate: Math.max(snap.appended - prev.appended, 0) / dt,
    });
    if (this.history.length > KEEP) this.history.shift();
  }

  series(key) {
    return this.history.map((p) => p[key]);
  }
}
