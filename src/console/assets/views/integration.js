// An integration's page: Test Event, its figures, its config (the key masked, rotate
// it), rename, enable or disable, pause or resume, delete with the queued-work guard.

import { ApiError, del, get, integrationPath, patch, post } from '../api.js';
import { button, confirming, facts, field, h, replace } from '../dom.js';
import { age, count, lane, time } from '../format.js';
import { chart } from '../chart.js';
import { answerPanel, attemptSummary, heading, issues, requestPanel } from './parts.js';

const SAMPLES = [
  ['', 'a test purchase (default)'],
  ['add_to_cart', 'a sample add_to_cart'],
  ['product_view', 'a sample product_view'],
];

function testEventPanel(id, report, onSent) {
  const which = h('select', { id: 'test-event-kind' }, SAMPLES.map(([value, label]) => h('option', { value }, label)));
  const result = h('div', { class: 'test-result', 'aria-live': 'polite' });
  const send = button('Test Event', async () => {
    replace(result, h('p', { class: 'loading' }, 'Sending to Button…'));
    try {
      const answer = await post(integrationPath(id, '/test-event'), which.value ? { event: which.value } : undefined);
      replace(result,
        attemptSummary(answer),
        issues('Mapping errors', answer.errors, 'bad'),
        issues('Warnings', answer.warnings, 'warn'),
        h('div', { class: 'panes two' }, requestPanel(answer.request), answerPanel(answer.status, answer.response)),
        h('p', {}, h('a', { href: `#/integrations/${encodeURIComponent(id)}/logs/${encodeURIComponent(answer.log_id)}` }, 'Its Live Logs entry')));
      onSent();
    } catch (error) {
      replace(result, h('p', { class: 'error' }, error.message));
      if (!(error instanceof ApiError)) report(error);
    }
  }, { class: 'primary', id: 'test-event' });
  return h('section', { class: 'panel', 'aria-labelledby': 'test-event-title' },
    h('h2', { id: 'test-event-title' }, 'Test Event'),
    h('p', { class: 'muted' }, 'Sends one event through this integration to Button now, bypassing the queue, and records it in Live Logs as a test.'),
    h('div', { class: 'toolbar' }, h('label', { for: 'test-event-kind' }, 'Send'), which, send),
    result);
}

function statsPanel(integration, stats) {
  const q = stats.queue;
  const base = `#/integrations/${encodeURIComponent(integration.id)}`;
  return h('section', { class: 'panel', 'aria-labelledby': 'stats-title' },
    h('h2', { id: 'stats-title' }, 'Delivery'),
    facts([
      ['Lane', lane(stats.lane.state, stats.lane.held_until)],
      integration.status.reason ? ['Why', integration.status.reason] : null,
      ['In flight', `${stats.lane.in_flight} of ${stats.lane.concurrency}`],
      ['Queued', count(q.depth)],
      ['Oldest pending', age(q.oldest_pending_age_seconds)],
      ['Dead letters', q.dead_letters ? h('a', { href: `${base}/dead-letters` }, count(q.dead_letters)) : '0'],
    ]),
    h('h3', {}, 'Last hour'),
    chart(stats.last_hour));
}

/** Shows an API error at a form's field, or under the form. */
function fieldError(target, error) {
  const detail = error.details && error.details[0];
  target.setError(detail ? detail.message : error.message);
}

function settingsPanel(integration, { reload, toast, go }) {
  const id = integration.id;
  const name = field('Name', h('input', { type: 'text', value: integration.name, autocomplete: 'off' }), { name: 'name' });
  const rename = h('form', { class: 'inline-form', novalidate: true }, name.wrapper, h('button', { type: 'submit' }, 'Rename'));
  rename.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await patch(integrationPath(id), { name: name.control.value });
      toast('Renamed.', 'good');
      reload();
    } catch (error) {
      if (error instanceof ApiError) fieldError(name, error);
      else throw error;
    }
  });

  const appId = field('Application ID', h('input', { type: 'text', value: integration.config.application_id || '', autocomplete: 'off', spellcheck: 'false' }), { name: 'config.application_id' });
  const changeApp = h('form', { class: 'inline-form', novalidate: true }, appId.wrapper, h('button', { type: 'submit' }, 'Change'));
  changeApp.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await patch(integrationPath(id), { config: { application_id: appId.control.value } });
      toast('Application ID changed.', 'good');
      reload();
    } catch (error) {
      if (error instanceof ApiError) fieldError(appId, error);
      else throw error;
    }
  });

  const key = field('New API key', h('input', { type: 'password', autocomplete: 'new-password', spellcheck: 'false' }), {
    name: 'config.api_key',
    help: 'The key in use is never shown. A new key also restarts a lane stopped by Button\u2019s 401.',
  });
  const rotate = h('form', { class: 'inline-form', novalidate: true }, key.wrapper, h('button', { type: 'submit' }, 'Rotate key'));
  rotate.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!key.control.value) {
      key.setError('Enter the new API key.');
      return;
    }
    try {
      await patch(integrationPath(id), { config: { api_key: key.control.value } });
      key.control.value = '';
      toast('API key rotated.', 'good');
      reload();
    } catch (error) {
      if (error instanceof ApiError) fieldError(key, error);
      else throw error;
    }
  });

  const paused = integration.status.lane !== 'active';
  const laneButton = paused
    ? button('Resume delivery', async () => {
      await post(integrationPath(id, '/resume'));
      toast('Delivery resumed.', 'good');
      reload();
    }, { id: 'resume' })
    : button('Pause delivery', async () => {
      await post(integrationPath(id, '/pause'));
      toast('Delivery paused: events keep queueing.', 'info');
      reload();
    }, { id: 'pause' });
  const enableButton = button(integration.enabled ? 'Disable' : 'Enable', async () => {
    await patch(integrationPath(id), { enabled: !integration.enabled });
    toast(integration.enabled ? 'Disabled: new events are not routed to it.' : 'Enabled.', 'info');
    reload();
  }, { id: 'enable-toggle' });

  const deleteOutcome = h('div', { class: 'delete-outcome', 'aria-live': 'polite' });
  const remove = confirming('Delete integration', `Delete ${integration.name} and its Live Logs?`, 'Delete', async () => {
    try {
      await del(integrationPath(id));
      toast(`Deleted ${integration.name}.`, 'info');
      go('#/integrations');
    } catch (error) {
      if (error instanceof ApiError && error.code === 'queued_work') {
        replace(deleteOutcome,
          h('p', { class: 'error' }, error.message),
          confirming('Delete anyway', 'Drop the queued deliveries and dead letters too?', 'Delete and drop them', async () => {
            await del(integrationPath(id), { force: 'true' });
            toast(`Deleted ${integration.name}; its queued work was dropped.`, 'info');
            go('#/integrations');
          }, { class: 'danger' }));
      } else {
        throw error;
      }
    }
  }, { class: 'danger', id: 'delete' });

  return h('section', { class: 'panel', 'aria-labelledby': 'settings-title' },
    h('h2', { id: 'settings-title' }, 'Settings'),
    facts([
      ['ID', h('code', {}, integration.id)],
      ['Type', `${integration.type} (${integration.variant}, ${integration.delivery_mode.replaceAll('_', ' ')})`],
      ['API key', h('code', { 'data-masked': 'true' }, integration.config.api_key)],
      ['Installed', time(integration.created_at)],
      ['Changed', time(integration.updated_at)],
    ]),
    rename, changeApp, rotate,
    h('div', { class: 'actions' }, laneButton, enableButton),
    h('h3', {}, 'Delete'),
    h('p', { class: 'muted' }, 'While deliveries are queued or dead letters wait, the service refuses and says how many.'),
    remove,
    deleteOutcome);
}

export async function integrationView(main, { params, title, toast, report, go, stale }) {
  const [id] = params;
  let stopped = false;
  async function load() {
    const [integration, stats] = await Promise.all([get(integrationPath(id)), get(integrationPath(id, '/stats'))]);
    if (stopped || stale()) return;
    title(integration.name);
    const reload = () => load().catch(report);
    let figures = statsPanel(integration, stats);
    // After a Test Event, its entry shows in the last hour's figures.
    const refreshFigures = async () => {
      try {
        const fresh = statsPanel(integration, await get(integrationPath(id, '/stats')));
        if (figures.isConnected) {
          figures.replaceWith(fresh);
          figures = fresh;
        }
      } catch (error) {
        report(error);
      }
    };
    replace(main,
      heading(integration, 'overview', stats.lane.state),
      h('div', { class: 'grid' },
        testEventPanel(id, report, refreshFigures),
        figures,
        settingsPanel(integration, { reload, toast, go })));
  }
  await load();
  return () => {
    stopped = true;
  };
}
