// Hand-written charts: a responsive SVG line/area chart with a hover tooltip (traffic over time,
// score histories), a tiny sparkline, and horizontal bar lists (top pages, referrers, …) in HTML.
// All labels are set as text nodes.

import { h, svg, replace } from './dom.js';
import { num } from './format.js';

/** Axis ticks for counts: a step of 1, 2 or 5 × 10^n giving at most 4 intervals up to ≥ value. */
export function niceTicks(value) {
  if (!(value > 0)) return { max: 4, step: 1 };
  const raw = value / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = 10 * power;
  for (const m of [1, 2, 5]) {
    if (m * power >= raw) {
      step = m * power;
      break;
    }
  }
  step = Math.max(1, step);
  return { max: Math.ceil(value / step) * step, step };
}

/**
 * A line chart, the first series also filled as an area.
 * - points: [{ x: label source (e.g. RFC 3339), values: { key: number } }]
 * - series: [{ key, label, tone: 'a' | 'b' | 'c' }]
 * - options: xLabel(x) for axis/tooltip, yFormat(v), yMax (fixed, e.g. 100 for scores),
 *   height (px), name (data-chart attribute).
 * Redraws itself at its container's width.
 */
export function lineChart(points, series, { xLabel = String, tipLabel, yFormat = num, yMax, height = 240, name = 'line' } = {}) {
  const wrap = h('div', { class: 'chart', dataset: { chart: name } });
  const tip = h('div', { class: 'chart-tip', role: 'presentation' });
  const legend = h(
    'div',
    { class: 'legend' },
    series.map((s) => h('span', { class: `legend-item tone-${s.tone}` }, h('i', { 'aria-hidden': 'true' }), s.label)),
  );
  const canvas = h('div', { class: 'chart-canvas' });
  wrap.append(series.length > 1 ? legend : '', canvas, tip);

  let lastWidth = 0;
  const draw = () => {
    const width = Math.max(240, Math.floor(canvas.clientWidth || wrap.clientWidth || 600));
    if (width === lastWidth) return;
    lastWidth = width;
    replace(canvas, render(width));
  };

  const render = (width) => {
    const pad = { top: 12, right: 16, bottom: 28, left: 44 };
    const w = width - pad.left - pad.right;
    const hgt = height - pad.top - pad.bottom;
    const ticks = yMax ? { max: yMax, step: yMax / 4 } : niceTicks(Math.max(0, ...points.flatMap((p) => series.map((s) => Number(p.values[s.key]) || 0))));
    const maxValue = ticks.max;
    const n = points.length;
    const x = (i) => pad.left + (n <= 1 ? w / 2 : (i / (n - 1)) * w);
    const y = (v) => pad.top + hgt - (Math.max(0, Number(v) || 0) / maxValue) * hgt;
    const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': series.map((s) => s.label).join(' and ') + ' chart', class: 'line-chart' });

    // Horizontal grid with value labels.
    for (let value = 0; value <= maxValue + 1e-9; value += ticks.step) {
      const gy = y(value);
      root.append(
        svg('line', { class: 'gridline', x1: pad.left, x2: pad.left + w, y1: gy, y2: gy }),
        svg('text', { class: 'axis', x: pad.left - 8, y: gy + 4, 'text-anchor': 'end' }, yFormat(value)),
      );
    }
    // X labels: at most ~1 per 90 px.
    const every = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(w / 90))));
    points.forEach((p, i) => {
      if (i % every === 0) {
        root.append(svg('text', { class: 'axis', x: x(i), y: height - 8, 'text-anchor': n <= 1 ? 'middle' : i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle' }, xLabel(p.x)));
      }
    });

    series.forEach((s, index) => {
      const coords = points.map((p, i) => [x(i), y(p.values[s.key])]);
      if (coords.length === 0) return;
      const line = coords.map(([cx, cy], i) => `${i ? 'L' : 'M'}${cx.toFixed(1)},${cy.toFixed(1)}`).join('');
      if (index === 0 && coords.length > 1) {
        const base = (pad.top + hgt).toFixed(1);
        root.append(svg('path', { class: `area tone-${s.tone}`, d: `${line}L${coords[coords.length - 1][0].toFixed(1)},${base}L${coords[0][0].toFixed(1)},${base}Z` }));
      }
      if (coords.length > 1) root.append(svg('path', { class: `line tone-${s.tone}`, d: line }));
      if (coords.length <= 40) {
        for (const [cx, cy] of coords) root.append(svg('circle', { class: `dot tone-${s.tone}`, cx: cx.toFixed(1), cy: cy.toFixed(1), r: 3 }));
      }
    });

    // Hover: a guide line and a tooltip for the nearest point.
    const guide = svg('line', { class: 'guide', y1: pad.top, y2: pad.top + hgt, x1: -10, x2: -10 });
    const overlay = svg('rect', { class: 'overlay', x: pad.left - 8, y: pad.top, width: w + 16, height: hgt });
    root.append(guide, overlay);
    const show = (event) => {
      if (n === 0) return;
      const box = root.getBoundingClientRect();
      const px = event.clientX - box.left;
      const i = n <= 1 ? 0 : Math.max(0, Math.min(n - 1, Math.round(((px - pad.left) / w) * (n - 1))));
      const gx = x(i);
      guide.setAttribute('x1', gx);
      guide.setAttribute('x2', gx);
      replace(
        tip,
        h('div', { class: 'tip-title' }, (tipLabel || xLabel)(points[i].x)),
        series.map((s) => h('div', { class: `tip-row tone-${s.tone}` }, h('i', { 'aria-hidden': 'true' }), `${s.label}: `, h('b', yFormat(points[i].values[s.key] ?? 0)))),
      );
      tip.classList.add('show');
      const left = Math.min(Math.max(0, gx + 12), width - tip.offsetWidth - 4);
      tip.style.left = `${left}px`;
      tip.style.top = `${pad.top + (series.length > 1 ? 28 : 0)}px`;
    };
    const hide = () => {
      tip.classList.remove('show');
      guide.setAttribute('x1', -10);
      guide.setAttribute('x2', -10);
    };
    overlay.addEventListener('mousemove', show);
    overlay.addEventListener('mouseleave', hide);
    return root;
  };

  if (typeof ResizeObserver === 'function') {
    const observer = new ResizeObserver(() => draw());
    observer.observe(wrap);
  }
  requestAnimationFrame(draw);
  // Draw at once too when already in the document (tests and screenshots see a chart straight away).
  queueMicrotask(() => {
    if (wrap.isConnected) draw();
  });
  return wrap;
}

/** A small inline trend line (no axes) for tiles. */
export function sparkline(values, { width = 120, height = 32, name = 'spark', stretch = false } = {}) {
  const max = Math.max(1, ...values);
  const n = values.length;
  const root = svg('svg', {
    class: `sparkline${stretch ? ' stretch' : ''}`,
    width: stretch ? undefined : width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: stretch ? 'none' : undefined,
    'aria-hidden': 'true',
    dataset: { chart: name },
  });
  if (n === 0) return root;
  const x = (i) => (n <= 1 ? width / 2 : (i / (n - 1)) * (width - 2) + 1);
  const y = (v) => height - 2 - (v / max) * (height - 4);
  const d = values.map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join('');
  if (n > 1) root.append(svg('path', { class: 'spark-area', d: `${d}L${x(n - 1).toFixed(1)},${height}L${x(0).toFixed(1)},${height}Z` }), svg('path', { class: 'spark-line', d }));
  return root;
}

/**
 * Horizontal bars for a top list: items [{ key, count }]. `total` (optional) adds a share column;
 * `format(key)` renders the key (text). With `onPick(item)` a click on a row (or Enter on its
 * label, a button) picks it; with `onExclude(item)` the row also gets a small "exclude" button.
 */
export function barList(items, { name, total, format = (k) => k, valueFormat = num, emptyText = 'No data in this range', onPick, onExclude } = {}) {
  const list = h('ol', { class: 'bars', dataset: { chart: name } });
  if (!items || items.length === 0) return h('div', { class: 'bars-empty muted', dataset: { chart: name } }, emptyText);
  const max = Math.max(1, ...items.map((i) => Number(i.count) || 0));
  for (const item of items) {
    const count = Number(item.count) || 0;
    const label = format(item.key);
    const row = h(
      'li',
      { class: `bar-row${onPick ? ' pickable' : ''}`, title: `${label}: ${valueFormat(count)}`, dataset: { key: item.key } },
      h('span', { class: 'bar-fill', style: { width: `${((count / max) * 100).toFixed(1)}%` }, 'aria-hidden': 'true' }),
      onPick ? h('button', { type: 'button', class: 'bar-label bar-pick', title: `Only ${label}` }, label) : h('span', { class: 'bar-label' }, label),
      onExclude ? h('button', { type: 'button', class: 'bar-exclude', title: `Exclude ${label}`, 'aria-label': `Exclude ${label}` }, 'exclude') : null,
      h('span', { class: 'bar-value' }, valueFormat(count), total ? h('small', { class: 'muted' }, ` ${Math.round((count / total) * 100)}%`) : null),
    );
    if (onPick || onExclude) {
      row.addEventListener('click', (event) => {
        if (event.target.closest('.bar-exclude')) onExclude?.(item);
        else onPick?.(item);
      });
    }
    list.append(row);
  }
  return list;
}

/** Labelled 0..100 meters (score breakdowns, health components); null values show "no data". */
export function meters(entries, { name, scale = 'health' } = {}) {
  return h(
    'ul',
    { class: 'meters', dataset: { chart: name } },
    entries.map(({ label, value, note }) => {
      const known = value !== null && value !== undefined && Number.isFinite(Number(value));
      const v = known ? Math.max(0, Math.min(100, Number(value))) : 0;
      const tone = v >= 70 ? 'hi' : v >= 40 ? 'mid' : 'lo';
      return h(
        'li',
        { class: 'meter', title: note || undefined },
        h('span', { class: 'meter-label' }, label),
        h('span', { class: 'meter-track' }, known ? h('span', { class: `meter-fill ${scale === 'health' ? 'score' : 'heat'}-${tone}`, style: { width: `${v.toFixed(1)}%` } }) : null),
        h('span', { class: 'meter-value' }, known ? String(Math.round(Number(value) * 10) / 10) : 'no data'),
      );
    }),
  );
}
