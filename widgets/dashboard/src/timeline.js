// The event timeline of a visitor or a lead (newest first, grouped by day): what each event was,
// where, with which details, and — for leads seen on several devices — which device it came from.

import { h } from './dom.js';
import { DASH, day, duration, time } from './format.js';
import { chip } from './ui.js';

const TYPES = {
  pageview: ['Page view', 'pv'],
  engagement: ['Engagement', 'en'],
  click: ['Click', 'cl'],
  identify: ['Identified', 'id'],
  form_submit: ['Form submitted', 'fs'],
  form_view: ['Form viewed', 'fv'],
  form_start: ['Form started', 'fv'],
  custom: ['Custom event', 'cu'],
};

function traitsText(traits) {
  if (!traits || typeof traits !== 'object') return '';
  return Object.entries(traits)
    .slice(0, 6)
    .map(([k, v]) => `${k}: ${v}`)
    .join(' · ');
}

function details(event) {
  const parts = [];
  switch (event.type) {
    case 'engagement':
      parts.push(`scrolled ${event.scroll_depth ?? 0}%`, `${duration(event.engaged_ms ?? 0)} engaged`);
      break;
    case 'click': {
      const t = event.target || {};
      if (t.text) parts.push(`“${t.text}”`);
      if (t.href) parts.push(`→ ${t.href}`);
      if (t.outbound) parts.push('outbound');
      break;
    }
    case 'identify':
    case 'form_submit':
      if (event.form_id) parts.push(`form ${event.form_id}`);
      if (event.traits) parts.push(traitsText(event.traits));
      break;
    case 'form_view':
    case 'form_start':
      if (event.form_id) parts.push(`form ${event.form_id}`);
      break;
    case 'custom':
      if (event.name) parts.push(event.name);
      break;
    case 'pageview':
      if (event.referrer) parts.push(`from ${event.referrer}`);
      break;
    default:
      break;
  }
  if (event.props && typeof event.props === 'object') {
    const utm = Object.entries(event.props).filter(([k]) => k.startsWith('utm_'));
    if (utm.length) parts.push(utm.map(([k, v]) => `${k.slice(4)}=${v}`).join(' '));
  }
  return parts.filter(Boolean).join(' · ');
}

function deviceText(device) {
  if (!device) return DASH;
  const browser = device.browser || 'Unknown browser';
  return device.os ? `${browser} on ${device.os}` : browser;
}

/**
 * A timeline list. `devices` (optional) maps visitor_id → { index, label } to tag events of
 * multi-device leads. Returns { el, add(events) } for pagination.
 */
export function timeline({ devices } = {}) {
  const el = h('ol', { class: 'timeline', dataset: { timeline: '' } });
  let lastDay = null;
  const add = (events) => {
    for (const event of events) {
      const at = event.at || (event.ts_ms ? new Date(event.ts_ms).toISOString() : null);
      const dayLabel = day(at);
      if (dayLabel !== lastDay) {
        lastDay = dayLabel;
        el.append(h('li', { class: 'tl-day' }, dayLabel));
      }
      const [typeLabel, tone] = TYPES[event.type] || [event.type || 'Event', 'cu'];
      const device = devices?.get(event.visitor_id);
      el.append(
        h(
          'li',
          { class: 'tl-item', dataset: { type: event.type } },
          h('span', { class: 'tl-time' }, time(at)),
          h('span', { class: `tl-dot t-${tone}`, 'aria-hidden': 'true' }),
          h(
            'div',
            { class: 'tl-body' },
            h(
              'div',
              { class: 'tl-head' },
              h('span', { class: `tl-type t-${tone}` }, typeLabel),
              h('span', { class: 'tl-path', title: event.url || undefined }, event.path || event.url || ''),
              event.intent_signal ? chip(event.intent_signal, 'Intent signal') : null,
              event.is_bot ? chip('bot') : null,
            ),
            event.title ? h('div', { class: 'tl-title' }, event.title) : null,
            h('div', { class: 'tl-details muted' }, details(event)),
            device ? h('div', { class: `tl-device dev-${device.index % 6}` }, `Device ${device.index + 1}: ${device.label}`) : null,
          ),
        ),
      );
    }
  };
  return { el, add };
}

export { deviceText };
