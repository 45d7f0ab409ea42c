// Number, percentage, duration and date formatting for everything the dashboard displays.
// Missing values (null/undefined/NaN) render as an em dash.

export const DASH = '\u2014';

const missing = (v) => v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v));

const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const compactFmt = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });

/** 12,345 */
export function num(v) {
  return missing(v) ? DASH : intFmt.format(v);
}

/** 12.3 */
export function dec(v) {
  return missing(v) ? DASH : oneFmt.format(v);
}

/** 12K, 1.2M (exact below 10 000). */
export function compact(v) {
  if (missing(v)) return DASH;
  return Math.abs(v) < 10000 ? intFmt.format(v) : compactFmt.format(v);
}

/** A 0..1 ratio as a percentage: 0.283 → "28.3%". */
export function pct(v, digits = 1) {
  if (missing(v)) return DASH;
  return `${(v * 100).toFixed(digits).replace(/\.0+$/, '')}%`;
}

/** A signed change: +5.2 / −3 (with a real minus sign). */
export function signed(v, unit = '') {
  if (missing(v)) return DASH;
  const text = oneFmt.format(Math.abs(v)) + unit;
  return v > 0 ? `+${text}` : v < 0 ? `\u2212${text}` : text;
}

/** Money without a currency (the API has none): 28,040 or 1.2M. */
export function money(v) {
  return missing(v) ? DASH : compact(Math.round(v));
}

/** Milliseconds as "1h 5m", "5m 28s", "42s". */
export function duration(ms) {
  if (missing(ms)) return DASH;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${m % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

function toDate(v) {
  if (missing(v) || v === '') return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

const dateTimeFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric' });
const shortDayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
const hourFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' });

/** "Nov 24, 2026, 12:43 PM" in the browser's time zone. */
export function dateTime(v) {
  const d = toDate(v);
  return d ? dateTimeFmt.format(d) : DASH;
}

export function time(v) {
  const d = toDate(v);
  return d ? timeFmt.format(d) : DASH;
}

export function day(v) {
  const d = toDate(v);
  return d ? dayFmt.format(d) : DASH;
}

/** Chart axis labels: buckets are UTC days / hours. */
export function axisDay(v) {
  const d = toDate(v);
  return d ? shortDayFmt.format(d) : '';
}

export function axisHour(v) {
  const d = toDate(v);
  return d ? hourFmt.format(d) : '';
}

/** "3 min ago", "2 h ago", "5 d ago", "just now". */
export function ago(v, now = Date.now()) {
  const d = toDate(v);
  if (!d) return DASH;
  const s = Math.round((now - d.getTime()) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

const ACRONYMS = { mrr: 'MRR', nps: 'NPS', api: 'API', utm: 'UTM', id: 'ID', ms: 'ms', pc: 'PC' };

/** "days_to_renewal" → "Days to renewal", "mrr_90_days_ago" → "MRR 90 days ago". */
export function label(key) {
  const words = String(key ?? '').split(/[_\s]+/).filter(Boolean).map((w) => ACRONYMS[w.toLowerCase()] || w);
  if (!words.length) return DASH;
  const text = words.join(' ');
  return text[0].toUpperCase() + text.slice(1);
}

/** YYYY-MM-DD of a Date, in UTC. */
export function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

/** Middle-truncates long identifiers for tables (the full value goes in a title). */
export function shortId(id, keep = 14) {
  const text = String(id ?? '');
  return text.length > keep + 3 ? `${text.slice(0, keep - 4)}\u2026${text.slice(-4)}` : text;
}
