// The integrations list (each with its lane, queue and last hour) and installing
// Button from the catalog.

import { get, post, ApiError } from '../api.js';
import { field, h, replace } from '../dom.js';
import { age, count, lane } from '../format.js';
import { chart } from '../chart.js';

const PAGE = 20;
const REFRESH_MS = 30000;

function card(integration, stats) {
  const href = `#/integrations/${encodeURIComponent(integration.id)}`;
  const queue = stats ? stats.queue : null;
  const laneState = stats ? stats.lane.state : (integration.enabled ? integration.status.lane : 'disabled');
  return h('article', { class: 'card integration', 'data-id': integration.id },
    h('header', {},
      h('h2', {}, h('a', { href }, integration.name)),
      lane(laneState, stats ? stats.lane.held_until : null)),
    h('p', { class: 'muted mono' }, integration.id, ' · ', integration.config.application_id || ''),
    integration.status.reason ? h('p', { class: 'reason' }, integration.status.reason) : null,
    h('dl', { class: 'figures' },
      h('div', {}, h('dt', {}, 'Queued'), h('dd', { 'data-figure': 'queued' }, queue ? count(queue.depth) : '—')),
      h('div', {}, h('dt', {}, 'Oldest pending'), h('dd', { 'data-figure': 'oldest' }, queue ? age(queue.oldest_pending_age_seconds) : '—')),
      h('div', {}, h('dt', {}, 'Dead letters'), h('dd', { 'data-figure': 'dead' },
        queue && queue.dead_letters > 0
          ? h('a', { href: `${href}/dead-letters` }, count(queue.dead_letters))
          : (queue ? '0' : '—')))),
    stats ? chart(stats.last_hour) : h('p', { class: 'muted' }, 'Figures unavailable'),
    h('nav', { class: 'links', 'aria-label': `${integration.name}: pages` },
      h('a', { href }, 'Overview'),
      h('a', { href: `${href}/logs` }, 'Live Logs'),
      h('a', { href: `${href}/blueprint` }, 'Blueprint')));
}

export async function integrationsView(main, { title, report, stale }) {
  title('Integrations');
  const list = h('div', { class: 'cards', 'aria-live': 'off' });
  const more = h('button', { type: 'button', hidden: true }, 'More integrations');
  const updated = h('span', { class: 'muted' });
  const refresh = h('button', { type: 'button', class: 'quiet' }, 'Refresh');
  const auto = h('input', { type: 'checkbox', id: 'auto-refresh', checked: true });
  let cursor = null;
  let shown = [];
  let timer = null;

  // The page's figures in one call (`/integrations/stats`, with the list's limit and
  // cursor), not one per integration: the admin rate limit counts every call.
  async function withStats(integrations, query) {
    let figures = new Map();
    try {
      const page = await get('/v1/admin/integrations/stats', query);
      figures = new Map(page.data.map((stats) => [stats.integration_id, stats]));
    } catch (error) {
      report(error);
    }
    return integrations.map((integration) => card(integration, figures.get(integration.id) || null));
  }

  async function load(reset) {
    const wanted = reset ? Math.max(PAGE, shown.length) : PAGE;
    const query = { limit: Math.min(100, wanted), cursor: reset ? undefined : cursor };
    const page = await get('/v1/admin/integrations', query);
    if (stale()) return;
    shown = reset ? page.data : shown.concat(page.data);
    cursor = page.next_cursor;
    more.hidden = !page.has_more;
    const cards = await withStats(page.data, query);
    if (stale()) return;
    if (reset) replace(list, cards);
    else list.append(...cards);
    if (!shown.length) {
      replace(list, h('div', { class: 'empty panel' },
        h('p', {}, 'No integration is installed yet.'),
        h('p', {}, h('a', { class: 'button primary', href: '#/integrations/new' }, 'Install Button'))));
    }
    replace(updated, `Updated ${new Date().toLocaleTimeString()}`);
  }

  function schedule() {
    clearTimeout(timer);
    if (auto.checked) {
      timer = setTimeout(async () => {
        // A hidden tab spends none of the token's rate limit (two calls a page).
        if (!document.hidden) {
          try {
            await load(true);
          } catch (error) {
            report(error);
          }
        }
        schedule();
      }, REFRESH_MS);
    }
  }

  more.addEventListener('click', () => load(false).catch(report));
  refresh.addEventListener('click', () => load(true).catch(report));
  auto.addEventListener('change', schedule);

  await load(true);
  replace(main,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Integrations'),
      h('div', { class: 'actions' },
        h('a', { class: 'button primary', href: '#/integrations/new' }, 'Install Button'),
        refresh)),
    h('p', { class: 'toolbar' }, updated, ' ',
      h('label', { class: 'inline' }, auto, ' Refresh every 30 s')),
    list,
    more);
  schedule();
  return () => clearTimeout(timer);
}

/** Maps the API's `details[].field` to the form's fields; the rest go at the top. */
function showErrors(fields, general, error) {
  for (const f of Object.values(fields)) f.setError(null);
  replace(general);
  general.hidden = true;
  const unplaced = [];
  let first = null;
  for (const detail of error.details) {
    const target = fields[detail.field];
    if (target) {
      target.setError(detail.message);
      first = first || target.control;
    } else {
      unplaced.push(detail.field ? `${detail.field}: ${detail.message}` : detail.message);
    }
  }
  if (!error.details.length) unplaced.push(error.message);
  if (unplaced.length) {
    replace(general, h('p', {}, error.details.length ? 'Also:' : 'The service refused it:'), h('ul', {}, unplaced.map((m) => h('li', {}, m))));
    general.hidden = false;
  }
  (first || general).focus();
}

export async function installView(main, { title, go, toast }) {
  title('Install Button');
  const entry = await get('/v1/admin/integration-catalog/button');
  const fields = {};
  const name = h('input', { type: 'text', name: 'name', value: entry.name, autocomplete: 'off' });
  fields.name = field('Name', name, { name: 'name', help: 'How this integration is shown; one per Button application, say "Button (EU store)".' });
  const variant = h('select', { name: 'variant' }, entry.variants.map((v) => h('option', { value: v.key }, v.name)));
  fields.variant = field('Variant', variant, { name: 'variant' });
  const mode = h('select', { name: 'delivery_mode' }, entry.delivery_modes.map((m) => h('option', { value: m }, m.replaceAll('_', ' '))));
  fields.delivery_mode = field('Delivery mode', mode, { name: 'delivery_mode' });
  const config = {};
  for (const f of entry.config_fields) {
    const input = h('input', {
      type: f.kind === 'secret' ? 'password' : 'text',
      name: `config.${f.key}`,
      placeholder: f.placeholder || undefined,
      autocomplete: f.kind === 'secret' ? 'new-password' : 'off',
      spellcheck: 'false',
    });
    config[f.key] = input;
    fields[`config.${f.key}`] = field(`${f.label}${f.required ? '' : ' (optional)'}`, input, { name: `config.${f.key}`, help: f.help_text });
  }
  const general = h('div', { class: 'form-error', role: 'alert', tabindex: '-1', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Install integration');
  const form = h('form', { class: 'panel form', novalidate: true },
    general,
    Object.values(fields).map((f) => f.wrapper),
    h('div', { class: 'actions' }, submit, h('a', { class: 'button quiet', href: '#/integrations' }, 'Cancel')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    const body = {
      name: name.value,
      variant: variant.value,
      config: Object.fromEntries(Object.entries(config).map(([k, input]) => [k, input.value])),
      delivery_mode: mode.value,
    };
    try {
      const created = await post(`/v1/admin/integration-catalog/${encodeURIComponent(entry.key)}/install`, body);
      toast(`Installed ${created.name}.`, 'good');
      go(`#/integrations/${encodeURIComponent(created.id)}`);
    } catch (error) {
      if (error instanceof ApiError) showErrors(fields, general, error);
      else throw error;
    } finally {
      submit.disabled = false;
    }
  });
  replace(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/integrations' }, 'Integrations'), ' / Install'),
    h('div', { class: 'page-head' }, h('h1', {}, `Install ${entry.name}`)),
    h('p', { class: 'muted' }, entry.description),
    form);
  name.focus();
  return null;
}
