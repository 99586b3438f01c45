// The last hour of an integration as a small stacked bar chart: one bar per five
// minutes, its height the entries recorded, split by outcome. Drawn as SVG elements
// (no image, no markup parsing); colours come from the stylesheet.

import { h, s } from './dom.js';
import { count, outcome, outcomeNames } from './format.js';

const WIDTH = 240;
const HEIGHT = 56;
const GAP = 2;

/** Attempts a minute over the windows, and the delivered share of them. */
export function rates(lastHour, now = Date.now()) {
  const since = new Date(lastHour.since).getTime();
  const minutes = Math.max(1, (now - since) / 60000);
  const totals = lastHour.outcomes || {};
  const all = Object.values(totals).reduce((a, b) => a + b, 0);
  const delivered = totals.delivered || 0;
  return {
    all,
    delivered,
    perMinute: all / minutes,
    deliveredShare: all ? delivered / all : null,
  };
}

export function chart(lastHour) {
  const windows = lastHour.windows || [];
  const totals = windows.map((w) => Object.values(w.outcomes).reduce((a, b) => a + b, 0));
  const highest = Math.max(1, ...totals);
  const barWidth = (WIDTH - GAP * (windows.length - 1)) / Math.max(1, windows.length);
  const { all, perMinute, deliveredShare } = rates(lastHour);
  const rate = perMinute < 0.1 ? 'under 0.1' : perMinute.toFixed(1);
  const summary = all
    ? `${count(all)} ${all === 1 ? 'entry' : 'entries'} in the last hour, ${rate} a minute, ${Math.round(deliveredShare * 100)}% delivered`
    : 'No entries in the last hour';
  const bars = windows.map((w, i) => {
    const x = i * (barWidth + GAP);
    let y = HEIGHT;
    const segments = [];
    for (const name of outcomeNames) {
      const n = w.outcomes[name] || 0;
      if (!n) continue;
      const height = Math.max(1, (n / highest) * (HEIGHT - 2));
      y -= height;
      segments.push(s('rect', { x: x.toFixed(1), y: y.toFixed(1), width: barWidth.toFixed(1), height: height.toFixed(1), class: `seg seg-${name}` }));
    }
    const start = new Date(w.start);
    const label = `${start.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${totals[i] ? Object.entries(w.outcomes).map(([k, v]) => `${v} ${k.replaceAll('_', ' ')}`).join(', ') : 'no entries'}`;
    return s('g', {}, s('title', {}, label), s('rect', { x: x.toFixed(1), y: 0, width: barWidth.toFixed(1), height: HEIGHT, class: 'slot' }), segments);
  });
  const svg = s('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'aria-label': summary, preserveAspectRatio: 'none' }, s('title', {}, summary), bars);
  const legend = h('ul', { class: 'legend' }, Object.entries(lastHour.outcomes || {})
    .filter(([, n]) => n > 0)
    .map(([name, n]) => h('li', {}, h('span', { class: `swatch seg-${name}`, 'aria-hidden': 'true' }), outcome(name), ' ', count(n))));
  return h('figure', { class: 'last-hour' }, svg, h('figcaption', {}, summary), legend);
}
