// The ops console in headless Chromium against the real binary: what an operator does
// at 3 a.m., step by step, each test on from where the last one left the page.
//
//   node --test console.test.mjs       (tests/console/run.sh installs what it needs)
//
// Button's Orders API is a fake-button process; its activity API is a port where
// nothing listens until the dead-letter test starts a second fake there, so that an
// add_to_cart dead-letters (one attempt allowed) and its replay is then delivered.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { admin, chromiumPath, freePort, ingest, purchase, screenshotDir, startFakeButton, startService } from './harness.mjs';

const LAPTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

let fake;
let activityFake;
let activityPort;
let service;
let browser;
let context;
let page;
let integrationId;
const problems = [];
const requests = [];
const dialogs = [];

async function shot(name, { fullPage = true } = {}) {
  // The messages line would cover the page; it says nothing a picture needs. (Hidden
  // through the page's own rule: an injected style would break the page's policy.)
  await page.evaluate(() => {
    document.getElementById('toast').dataset.shown = 'false';
  });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage });
}

async function phoneShot(name) {
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(150);
  await shot(`${name}-phone`);
  await page.setViewportSize(LAPTOP);
}

/**
 * Goes to a console page by its hash, and waits until it is drawn. The hash changes at
 * once but the router's `hashchange` runs after: until then the page before is still
 * there, and may match `ready`. So this waits for that event first (the router's
 * listener, added before, has then replaced the page with its loading line).
 */
async function visit(hash, ready) {
  await page.evaluate(
    (h) =>
      new Promise((resolve) => {
        const before = location.hash;
        location.hash = h;
        if (location.hash === before) resolve();
        else window.addEventListener('hashchange', () => resolve(), { once: true });
      }),
    hash,
  );
  await page.locator(ready).first().waitFor();
}

before(async () => {
  mkdirSync(screenshotDir, { recursive: true });
  fake = await startFakeButton();
  activityPort = await freePort();
  service = await startService({
    ordersUrl: fake.url,
    activityUrl: `http://127.0.0.1:${activityPort}/app/{application_id}/v1/app/activity`,
    // One attempt: a delivery Button does not take is a dead letter at once.
    settings: { BUTTON_DELIVERY__MAX_ATTEMPTS: '1' },
  });
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  context = await browser.newContext({ viewport: LAPTOP, colorScheme: 'light' });
  page = await context.newPage();
  // What would betray a script run from an event: a dialog, or the flag set.
  await page.addInitScript(() => {
    window.__injected = false;
    window.alert = () => {
      window.__injected = true;
    };
  });
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('request', (request) => requests.push({ at: Date.now(), url: request.url(), method: request.method(), headers: request.headers() }));
});

after(async () => {
  await browser?.close();
  await service?.stop();
  await fake?.stop();
  await activityFake?.stop();
});

test('the console is served at /console and asks for a token; a wrong one is refused at its field', async () => {
  const response = await page.goto(`${service.base}/console`);
  assert.equal(response.status(), 200);
  assert.ok(page.url().endsWith('/console/#/signin') || page.url().includes('/console/'), page.url());
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  await page.getByLabel('Admin token').waitFor();
  await shot('signin');
  await page.getByLabel('Admin token').fill('not-the-token');
  await page.keyboard.press('Enter');
  await page.getByText('The service did not take this token as an admin token.').waitFor();
  assert.equal(await page.getByLabel('Admin token').getAttribute('aria-invalid'), 'true');
});

test('signing in with the admin token, by keyboard, shows the integrations and stores nothing', async () => {
  await page.getByLabel('Admin token').fill(service.adminToken);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Integrations' }).waitFor();
  await page.getByText('No integration is installed yet.').waitFor();
  const stored = await page.evaluate(() => ({
    local: localStorage.length,
    session: sessionStorage.length,
    cookie: document.cookie,
  }));
  assert.deepEqual(stored, { local: 0, session: 0, cookie: '' });
  assert.deepEqual(await context.cookies(), []);
  for (const r of requests) {
    assert.ok(!r.url.includes(service.adminToken), `the token is in a URL: ${r.url}`);
    assert.ok(r.url.startsWith(service.base), `a request left the service: ${r.url}`);
  }
});

test('installing Button shows each validation error of the API at its field, then installs', async () => {
  await visit('#/integrations/new', 'form.form');
  await page.getByLabel('Application ID').fill('not an id');
  await page.getByRole('button', { name: 'Install integration' }).click();
  const appError = page.locator('[data-field="config.application_id"] .field-error');
  const keyError = page.locator('[data-field="config.api_key"] .field-error');
  await appError.waitFor();
  await keyError.waitFor();
  assert.notEqual((await appError.textContent()).trim(), '');
  assert.notEqual((await keyError.textContent()).trim(), '');
  assert.equal(await page.getByLabel('Application ID').getAttribute('aria-invalid'), 'true');
  await shot('install-errors');

  await page.getByLabel('Name').fill('Button (US store)');
  await page.getByLabel('Application ID').fill('app-console1');
  await page.getByLabel('API key').fill('sk-test-valid');
  await page.getByRole('button', { name: 'Install integration' }).click();
  await page.getByRole('heading', { name: 'Button (US store)', level: 1 }).waitFor();
  integrationId = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
  assert.match(integrationId, /^int_/);
  assert.equal(await page.locator('[data-masked]').textContent(), '***');
});

test('Test Event shows Button\u2019s 200 OK, the latency, the request sent and the answer', async () => {
  await page.locator('#test-event').click();
  const status = page.locator('.test-result .status-big');
  await status.waitFor();
  assert.equal((await status.textContent()).trim(), '200 OK');
  const request = page.locator('.test-result [data-pane="request"]');
  assert.match(await request.textContent(), /POST\s+http:\/\/127\.0\.0\.1:\d+\/v1\/order/);
  assert.match(await request.textContent(), /"order_id"/);
  assert.match(await page.locator('.test-result').textContent(), /in \d+(\.\d)? ms/);
  assert.match(await page.locator('.test-result [data-pane="answer"]').textContent(), /200 OK/);
  await shot('integration');
});

test('an event sent to the ingest API appears in the live tail within a second', async () => {
  await visit(`#/integrations/${integrationId}/logs`, '.tail-state[data-state="live"]');
  const event = purchase();
  const sent = Date.now();
  await ingest(service, event);
  await page.locator(`tr:has-text("${event.messageId}")`).waitFor({ timeout: 1000 });
  const took = Date.now() - sent;
  assert.ok(took <= 1000, `the entry appeared after ${took} ms`);
  await page.locator(`tr:has-text("${event.messageId}") .outcome-delivered`).waitFor();
  await shot('live-logs');
  await phoneShot('live-logs');
});

test('an entry shows the event as received, the request sent and Button\u2019s answer side by side', async () => {
  const row = page.locator('table.logs tbody tr').filter({ hasNotText: 'test' }).first();
  await row.locator('a').click();
  await page.locator('.panes.three').waitFor();
  const event = await page.locator('[data-pane="event"]').textContent();
  assert.match(event, /"revenue": 19\.99/);
  assert.match(await page.locator('[data-pane="request"]').textContent(), /\/v1\/order/);
  assert.match(await page.locator('[data-pane="answer"]').textContent(), /200 OK/);
  const boxes = await page.locator('.panes.three > .pane').evaluateAll((panes) => panes.map((p) => p.getBoundingClientRect().top));
  assert.equal(new Set(boxes.map(Math.round)).size, 1, `the three panes are side by side at a laptop width: ${boxes}`);
  await shot('entry');
  await phoneShot('entry');
});

test('a dead letter is listed, and replaying it delivers it', async () => {
  await visit(`#/integrations/${integrationId}/logs`, '.tail-state[data-state="live"]');
  const event = {
    type: 'track',
    event: 'add_to_cart',
    messageId: `cart-${Date.now()}`,
    timestamp: new Date().toISOString(),
    properties: { product_id: 'p-9', name: 'Hat', price: 5, currency: 'USD', quantity: 1 },
  };
  await ingest(service, event);
  await page.locator(`tr:has-text("${event.messageId}") .outcome-dead_lettered`).waitFor({ timeout: 10000 });

  await visit(`#/integrations/${integrationId}/dead-letters`, `tr:has-text("${event.messageId}")`);
  await shot('dead-letters');
  // Button's activity API comes back; the replay starts the attempts afresh.
  activityFake = await startFakeButton(activityPort);
  await page.locator(`tr:has-text("${event.messageId}") button.replay`).click();
  await page.locator('.empty-dead').waitFor();
  await page.getByText('Replayed 1 dead letter.').waitFor();

  await visit(`#/integrations/${integrationId}/logs?message_id=${event.messageId}`, 'table.logs');
  await page.locator(`tr:has-text("${event.messageId}") .outcome-delivered`).waitFor({ timeout: 10000 });

  // The list's filters are the API's: only the dead-lettered attempt.
  await visit(`#/integrations/${integrationId}/logs`, '.tail-state[data-state="live"]');
  // The unfiltered table stays on the page until the router has drawn the filtered one
  // (the hash changes before its event runs): mark it, and read only a table drawn after.
  await page.evaluate(() => {
    document.querySelector('table.logs').dataset.before = 'filter';
  });
  await page.locator('.filters select[name="outcome"]').selectOption('dead_lettered');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForFunction(() => location.hash.includes('outcome=dead_lettered'));
  const filtered = page.locator('table.logs:not([data-before]) tbody tr');
  await filtered.first().waitFor();
  const outcomes = await filtered.locator('.badge:not(.tone-neutral)').allTextContents();
  assert.deepEqual(outcomes, ['dead lettered']);
});

test('pausing a lane holds delivery (events queue), resuming delivers them', async () => {
  await visit(`#/integrations/${integrationId}`, '#pause');
  await page.locator('#pause').click();
  await page.locator('#resume').waitFor();
  assert.match(await page.locator('.heading .lane').textContent(), /paused/);

  const event = purchase();
  await ingest(service, event);
  await visit('#/integrations', `[data-id="${integrationId}"]`);
  const queued = page.locator(`[data-id="${integrationId}"] [data-figure="queued"]`);
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.waitForFunction((id) => document.querySelector(`[data-id="${id}"] [data-figure="queued"]`)?.textContent === '1', integrationId);
  assert.equal(await queued.textContent(), '1');
  assert.match(await page.locator(`[data-id="${integrationId}"] .lane`).textContent(), /paused/);
  await shot('integrations');
  await phoneShot('integrations');

  await visit(`#/integrations/${integrationId}`, '#resume');
  await page.locator('#resume').click();
  await page.locator('#pause').waitFor();
  assert.match(await page.locator('.heading .lane').textContent(), /active/);
  await visit(`#/integrations/${integrationId}/logs?message_id=${event.messageId}`, 'table.logs');
  await page.locator(`tr:has-text("${event.messageId}") .outcome-delivered`).waitFor({ timeout: 10000 });
});

test('the blueprint is readable, a bad edit is refused with the error at its place, Preview maps a pasted event', async () => {
  await visit(`#/integrations/${integrationId}/blueprint`, '#edit-blueprint');
  assert.match(await page.locator('table.table caption').textContent(), /\d+ mappings/);
  await page.locator('#edit-blueprint').click();
  const text = await page.locator('#blueprint-text').inputValue();
  await page.locator('#blueprint-text').fill(text.replace('"call": "order.create"', '"call": "order.explode"'));
  await page.locator('#save-blueprint').click();
  const error = page.locator('#blueprint-errors li').first();
  await error.waitFor();
  assert.match(await error.textContent(), /line \d+/);
  assert.match(await error.getAttribute('data-field'), /^mappings\[\d+\]/);
  const selected = await page.locator('#blueprint-text').evaluate((t) => t.value.slice(t.selectionStart, t.selectionEnd));
  assert.ok(selected.length > 0, 'the error\u2019s place is selected in the text');
  await shot('blueprint-error');

  await page.locator('#preview').click();
  await page.locator('[data-outcome="request"]').waitFor();
  assert.match(await page.locator('.preview-result').textContent(), /\/v1\/order/);
  await shot('blueprint');

  await page.locator('#reset-blueprint').click();
  await page.getByRole('button', { name: 'Reset', exact: true }).click();
  await page.getByText('Blueprint reset to the default.').waitFor();
});

test('an event carrying script in its properties is shown as text and runs nothing', async () => {
  const payloads = [
    '<img src=x onerror="window.__injected=true;alert(1)">',
    '<script>window.__injected=true;alert(2)</script>',
    '"><svg onload=alert(3)>',
  ];
  await visit(`#/integrations/${integrationId}/logs`, '.tail-state[data-state="live"]');
  const event = purchase({ order_id: payloads[0], coupon: payloads[1], products: [{ product_id: payloads[2], name: payloads[0], price: 1, quantity: 1 }] }, payloads[2]);
  await ingest(service, event);
  const row = page.locator('table.logs tbody tr').filter({ hasText: payloads[2] }).first();
  await row.waitFor();
  await row.locator('a').click();
  await page.locator('.panes.three').waitFor();
  const shown = await page.locator('[data-pane="event"]').textContent();
  for (const p of payloads) assert.ok(shown.includes(JSON.stringify(p).slice(1, -1)), `the event pane shows ${p} as text`);
  await page.waitForTimeout(300);
  const state = await page.evaluate(() => ({
    injected: window.__injected,
    elements: document.querySelectorAll('main img, main script, main svg[onload], main iframe, [onerror], [onload]').length,
  }));
  assert.deepEqual(state, { injected: false, elements: 0 });
  assert.deepEqual(dialogs, []);
  await shot('entry-script');
});

test('a source is created with its token shown once, connected and disconnected, and deleted', async () => {
  await visit('#/sources', '#new-source');
  await page.getByLabel('Name').fill('EU storefront');
  await page.locator('fieldset.connections input[type="checkbox"]').first().check();
  await page.getByRole('button', { name: 'Create source' }).click();
  const token = page.locator('.token-notice input');
  await token.waitFor();
  assert.match(await token.inputValue(), /.{20,}/);
  const card = page.locator('[data-source-id]').first();
  const connection = card.locator('.connections input[type="checkbox"]').first();
  assert.equal(await connection.isChecked(), true);
  await shot('sources');
  await connection.uncheck();
  await page.getByText('EU storefront no longer feeds').waitFor();
  const sourceId = await card.getAttribute('data-source-id');
  assert.deepEqual((await admin(service, 'GET', `/v1/admin/sources/${sourceId}`)).integrations, []);
  await connection.check();
  await page.getByText('EU storefront now feeds').waitFor();
  await card.getByRole('button', { name: 'Delete' }).click();
  await card.getByRole('button', { name: 'Delete' }).click();
  await page.locator('[data-source-id]').first().waitFor({ state: 'detached' });
});

test('settings: rename, rotate the key, disable and enable; delete is refused while work is queued, then drops it when told', async () => {
  // A second integration, installed by the test, to delete.
  const { id } = await admin(service, 'POST', '/v1/admin/integration-catalog/button/install', {
    name: 'To delete',
    config: { application_id: 'app-delete1', api_key: 'sk-test-valid' },
  });
  await visit(`#/integrations/${id}`, '#pause');
  await page.getByLabel('Name').fill('Button (EU store)');
  await page.getByRole('button', { name: 'Rename' }).click();
  await page.getByRole('heading', { name: 'Button (EU store)', level: 1 }).waitFor();

  // A key Button refuses: Test Event shows its 401 and the product page's hint.
  await page.getByLabel('New API key').fill('sk-test-wrong');
  await page.getByRole('button', { name: 'Rotate key' }).click();
  await page.getByText('API key rotated.').waitFor();
  assert.equal(await page.locator('[data-masked]').textContent(), '***');
  assert.equal(await page.getByLabel('New API key').inputValue(), '');
  await page.locator('#test-event').click();
  await page.locator('.test-result .status-big').waitFor();
  assert.equal((await page.locator('.test-result .status-big').textContent()).trim(), '401 Unauthorized');
  assert.match(await page.locator('.test-result .hint-box').textContent(), /api_key/);
  await shot('test-event-failed');
  await page.getByLabel('New API key').fill('sk-test-valid');
  await page.getByRole('button', { name: 'Rotate key' }).click();
  await page.getByText('API key rotated.').waitFor();

  await page.locator('#enable-toggle').click();
  await page.locator('#enable-toggle', { hasText: 'Enable' }).waitFor();
  await page.locator('#enable-toggle').click();
  await page.locator('#enable-toggle', { hasText: 'Disable' }).waitFor();

  // Work queued behind a paused lane: the service refuses the delete and says so.
  await page.locator('#pause').click();
  await page.locator('#resume').waitFor();
  await ingest(service, purchase());
  await page.locator('#delete').click();
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  const refusal = page.locator('.delete-outcome .error');
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /still has 1 queued deliveries/);
  await page.getByRole('button', { name: 'Delete anyway' }).click();
  await page.getByRole('button', { name: 'Delete and drop them' }).click();
  await page.getByRole('heading', { name: 'Integrations', level: 1 }).waitFor();
  await page.locator(`[data-id="${integrationId}"]`).waitFor();
  assert.equal(await page.locator(`[data-id="${id}"]`).count(), 0);
});

test('the dark theme is drawn from the reader\u2019s setting', async () => {
  await page.emulateMedia({ colorScheme: 'dark' });
  await visit(`#/integrations/${integrationId}`, '#test-event');
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(background, 'rgb(246, 247, 249)');
  await shot('integration-dark');
  await page.emulateMedia({ colorScheme: 'light' });
});

test('signing out ends access: the token is gone, going back or reloading shows sign-in, no API call is made', async () => {
  await visit(`#/integrations/${integrationId}/logs`, '.tail-state[data-state="live"]');
  const signedOutAt = Date.now();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Admin token').waitFor();
  await page.goBack();
  await page.waitForTimeout(300);
  await page.getByLabel('Admin token').waitFor();
  await page.evaluate(() => {
    location.hash = '#/integrations';
  });
  await page.waitForTimeout(300);
  await page.getByLabel('Admin token').waitFor();
  await page.reload();
  await page.getByLabel('Admin token').waitFor();
  // Nothing in the service takes the page's word for it either: no call carries a token now.
  const after = requests.filter((r) => r.at > signedOutAt && r.url.includes('/v1/admin/'));
  assert.deepEqual(after.map((r) => r.url), []);
  const stored = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie }));
  assert.deepEqual(stored, { local: 0, session: 0, cookie: '' });
});

test('the console made no request off the service, carried the token in no URL, and broke no policy', () => {
  for (const r of requests) {
    assert.ok(r.url.startsWith(service.base) || r.url.startsWith('data:'), `a request left the service: ${r.url}`);
    assert.ok(!r.url.includes(service.adminToken), `the token is in a URL: ${r.url}`);
  }
  // Chromium logs the API's 4xx answers the tests provoke (a wrong token, a bad install
  // or blueprint) as failed resources; anything else, a policy violation above all, fails.
  const unexpected = problems.filter((p) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(p));
  assert.deepEqual(unexpected, []);
});
