// The live tail: the admin API's Server-Sent Events stream, read with fetch so that
// the token goes in the Authorization header (EventSource cannot send one). The
// stream says `event: missed` with {"missed": n} when this reader fell behind; a
// dropped connection is opened again, and entries made meanwhile are missed too.

import { authorization, url, SignedOut } from './api.js';

/** Splits an event stream's text into events: {event, data, id}. */
export function* events(buffer) {
  for (const block of buffer) {
    let event = 'message';
    let id = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (name === 'event') event = value;
      else if (name === 'data') data.push(value);
      else if (name === 'id') id = value;
    }
    if (data.length) yield { event, id, data: data.join('\n') };
  }
}

/**
 * Follows `path` (with `query`) until stop() is called. Calls onEntry(entry) for each
 * `log` event, onMissed(n) when entries were missed, onState('live' | 'reconnecting' |
 * 'stopped', detail) as the connection changes, onRefused(error) when the token is refused.
 */
export function follow(path, query, { onEntry, onMissed, onState, onRefused }) {
  const controller = new AbortController();
  let stopped = false;
  let connectedBefore = false;

  async function run() {
    let wait = 500;
    while (!stopped) {
      let response;
      try {
        response = await fetch(url(path, query), {
          headers: { Authorization: authorization(), Accept: 'text/event-stream' },
          signal: controller.signal,
          cache: 'no-store',
          credentials: 'omit',
          referrerPolicy: 'no-referrer',
        });
      } catch (error) {
        if (stopped || error instanceof SignedOut) return;
        onState('reconnecting', 'the connection failed');
        await sleep(wait);
        wait = Math.min(wait * 2, 10000);
        continue;
      }
      if (response.status === 401) {
        onRefused();
        return;
      }
      if (!response.ok) {
        onState('reconnecting', `the service answered ${response.status}`);
        await sleep(wait);
        wait = Math.min(wait * 2, 10000);
        continue;
      }
      if (connectedBefore) onMissed(null);
      connectedBefore = true;
      wait = 500;
      onState('live');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let pending = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          pending += value.replaceAll('\r\n', '\n').replaceAll('\r', '\n');
          const blocks = pending.split('\n\n');
          pending = blocks.pop();
          for (const message of events(blocks)) {
            if (message.event === 'log') {
              try {
                onEntry(JSON.parse(message.data));
              } catch {
                // A malformed entry is skipped; the list still has it.
              }
            } else if (message.event === 'missed') {
              let missed = null;
              try {
                missed = JSON.parse(message.data).missed;
              } catch {
                missed = null;
              }
              onMissed(missed);
            }
          }
        }
      } catch {
        if (stopped) return;
      }
      if (stopped) return;
      onState('reconnecting', 'the stream ended');
      await sleep(wait);
    }
  }

  run().finally(() => {
    if (stopped) onState('stopped');
  });

  return {
    stop() {
      stopped = true;
      controller.abort();
    },
  };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
