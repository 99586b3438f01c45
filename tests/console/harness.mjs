// Starts what the browser tests drive: the real service binary and the fake Button
// binary (both built by cargo), on free local ports, with a fresh SQLite data
// directory; and headless Chromium through playwright-core.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '..', '..');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, 'target');

export const serviceBinary = process.env.BUTTON_BIN ? resolve(process.env.BUTTON_BIN) : join(targetDir, 'debug', 'button-delivery');
export const fakeBinary = process.env.FAKE_BUTTON_BIN ? resolve(process.env.FAKE_BUTTON_BIN) : join(dirname(serviceBinary), 'fake-button');
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
export const screenshotDir = process.env.CONSOLE_SCREENSHOTS ? resolve(process.env.CONSOLE_SCREENSHOTS) : join(targetDir, 'console-screenshots');

/** A port nothing listens on now (taken from the kernel, then released). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** Starts `binary` and waits (15 s at most) for `pattern` in its output. */
function start(name, binary, args, env, pattern) {
  if (!existsSync(binary)) {
    throw new Error(`${name}: no executable at ${binary}: build first (cargo build --workspace --locked --bins)`);
  }
  const child = spawn(binary, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const found = new Promise((resolveMatch, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 15 s:\n${output.slice(-4000)}`)), 15000);
    const read = (chunk) => {
      output += chunk.toString();
      const match = pattern.exec(output);
      if (match) {
        clearTimeout(timer);
        resolveMatch(match);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready:\n${output.slice(-4000)}`));
    });
  });
  return {
    child,
    found,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The fake Button on `port` (0: any free one); answers its base URL. */
export async function startFakeButton(port = 0) {
  const fake = start('fake-button', fakeBinary, ['--listen', `127.0.0.1:${port}`], { PATH: process.env.PATH }, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
  const [, url] = await fake.found;
  return { ...fake, url };
}

/**
 * The service, with Button's Orders API at `ordersUrl` and its activity API at
 * `activityUrl` (a template with {application_id}). Only these settings: none of the
 * caller's BUTTON_* variables leak in.
 */
export async function startService({ ordersUrl, activityUrl, settings = {} }) {
  const dir = mkdtempSync(join(tmpdir(), 'console-test-'));
  const adminToken = `admin-${randomBytes(16).toString('hex')}`;
  const ingestToken = `ingest-${randomBytes(16).toString('hex')}`;
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME || tmpdir(),
    BUTTON_SERVER__LISTEN: '127.0.0.1:0',
    BUTTON_SERVER__DATA_DIR: join(dir, 'data'),
    BUTTON_SERVER__SHUTDOWN_GRACE: '3s',
    BUTTON_DATABASE__URL: `sqlite://${join(dir, 'data', 'button-delivery.db')}`,
    BUTTON_AUTH__ADMIN_TOKENS: adminToken,
    BUTTON_AUTH__INGEST_TOKENS: ingestToken,
    BUTTON_BUTTON__ORDERS_BASE_URL: ordersUrl,
    BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE: activityUrl,
    BUTTON_BUTTON__CONNECT_TIMEOUT: '1s',
    BUTTON_BUTTON__REQUEST_TIMEOUT: '2s',
    BUTTON_DELIVERY__POLL_INTERVAL: '100ms',
    BUTTON_LOG__FORMAT: 'json',
    ...settings,
  };
  mkdirSync(join(dir, 'data'), { recursive: true });
  const service = start('button-delivery', serviceBinary, [], env, /"addr":"([^"]+)"/);
  const [, addr] = await service.found;
  return {
    ...service,
    base: `http://${addr}`,
    adminToken,
    ingestToken,
    async stop() {
      await service.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One admin API call from the test itself (not the browser); answers its JSON. */
export async function admin(service, method, path, body) {
  const response = await fetch(`${service.base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${service.adminToken}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Posts one event to the ingest API as Signal core does. */
export async function ingest(service, event) {
  const response = await fetch(`${service.base}/v1/events`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${service.ingestToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(event),
  });
  const body = await response.json();
  if (response.status !== 202) throw new Error(`ingest answered ${response.status}: ${JSON.stringify(body)}`);
  return body;
}

/** A purchase event with a fresh messageId. */
export function purchase(properties = {}, messageId = `m-${randomBytes(6).toString('hex')}`) {
  return {
    type: 'track',
    event: 'purchase',
    messageId,
    timestamp: new Date().toISOString(),
    userId: 'user-1',
    properties: {
      order_id: `o-${randomBytes(4).toString('hex')}`,
      revenue: 19.99,
      currency: 'USD',
      btn_ref: 'srctok-abc123',
      products: [{ product_id: 'p-1', name: 'Socks', price: 19.99, quantity: 1 }],
      ...properties,
    },
  };
}
