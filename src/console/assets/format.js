// How values read on the page.

import { h } from './dom.js';

/** Seconds as "45 s", "3 m 20 s", "2 h 5 m", "3 d 4 h". */
export function age(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** An RFC 3339 time in the reader's zone, with the exact value on hover. */
export function time(value) {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return h('time', { datetime: value, title: value }, timeFormat.format(date));
}

const clockFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: '2-digit' });

/** A time for a table: the clock time today, with the day before it on other days. */
export function shortTime(value) {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  const today = new Date().toDateString() === date.toDateString();
  return h('time', { datetime: value, title: value }, today ? clockFormat.format(date) : `${dayFormat.format(date)} ${clockFormat.format(date)}`);
}

export function ms(value) {
  if (value === null || value === undefined) return '—';
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

export function count(n) {
  return new Intl.NumberFormat().format(n ?? 0);
}

/** Outcome words as shown, and whether each is good, bad or neither. */
const OUTCOMES = {
  delivered: 'good',
  retry_scheduled: 'warn',
  failed: 'bad',
  dead_lettered: 'bad',
  filtered: 'neutral',
  mapping_failed: 'bad',
  paused: 'warn',
  remapped: 'neutral',
  held: 'warn',
};

export const outcomeNames = Object.keys(OUTCOMES);

export function outcome(word) {
  return h('span', { class: ['badge', `tone-${OUTCOMES[word] || 'neutral'}`, `outcome-${word}`] }, String(word).replaceAll('_', ' '));
}

const LANES = {
  active: 'good',
  rate_limited: 'warn',
  paused: 'warn',
  auth_failed: 'bad',
  disabled: 'neutral',
};

/** A lane state, with `held_until` when Button's Retry-After holds it. */
export function lane(state, heldUntil) {
  const label = String(state).replaceAll('_', ' ');
  return h('span', { class: ['badge', `tone-${LANES[state] || 'neutral'}`, 'lane'] }, label, heldUntil ? [' until ', time(heldUntil)] : null);
}

/** A browser datetime-local value (the reader's zone) as RFC 3339 UTC, or ''. */
export function localToRfc3339(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

/** RFC 3339 as a datetime-local value in the reader's zone. */
export function rfc3339ToLocal(value) {
  if (!value) return '';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}
