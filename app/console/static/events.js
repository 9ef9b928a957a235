// Watching a job live. The browser's EventSource cannot send an Authorization
// header, so the stream GET /v1/jobs/{id}/events is read with fetch() and a
// text/event-stream parser (WHATWG HTML, "Server-sent events": id, event,
// data, retry, comments; reconnects send Last-Event-ID). Where the server has
// no stream (404/405/501, or an answer that is not an event stream) or the
// stream keeps failing, the job is polled with GET /v1/jobs/{id}, honouring
// Retry-After.

import { ApiError, api, authHeaders, jobUrl, retryAfterSeconds } from './api.js';
import { TERMINAL, sleep } from './dom.js';

export class StreamUnavailable extends Error {}

const NO_STREAM = new Set([404, 405, 501]);
const MAX_STREAM_FAILURES = 3;
const MIN_POLL_S = 1;
const MAX_POLL_S = 15;

// Feed ``text`` chunks; calls ``dispatch({type, data, id})`` per complete event.
export class EventStreamParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = '';
    this.data = [];
    this.type = '';
    this.lastEventId = '';
    this.retry = null;
    this.sawField = false;
  }

  push(text) {
    this.buffer += text;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) return;
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) return;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === '') {
      if (this.data.length > 0) {
        this.dispatch({
          type: this.type || 'message',
          data: this.data.join('\n'),
          id: this.lastEventId,
        });
      }
      this.data = [];
      this.type = '';
      return;
    }
    if (line.startsWith(':')) return; // a comment: the server's keep-alive
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.type = value;
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

// A status document out of an event's data (the document itself, or wrapped).
function statusDocument(data) {
  let parsed;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  if (parsed && typeof parsed === 'object') {
    if (typeof parsed.status === 'string' && parsed.id !== undefined) return parsed;
    for (const key of ['job', 'data', 'document']) {
      const inner = parsed[key];
      if (inner && typeof inner === 'object' && typeof inner.status === 'string') return inner;
    }
  }
  return null;
}

// One connection to the stream: resolves true once a terminal document came.
async function streamOnce(id, state, onDoc, onMode, signal) {
  const headers = authHeaders({ Accept: 'text/event-stream' });
  if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
  const response = await fetch(jobUrl(id, '/events'), { headers, signal, cache: 'no-store' });
  if (NO_STREAM.has(response.status)) {
    throw new StreamUnavailable(`events: HTTP ${response.status}`);
  }
  if (!response.ok) throw await ApiError.from(response);
  const type = response.headers.get('Content-Type') || '';
  if (!type.startsWith('text/event-stream') || !response.body) {
    throw new StreamUnavailable(`events: ${type || 'no content type'}`);
  }
  onMode('stream');
  let terminal = false;
  const parser = new EventStreamParser((event) => {
    const doc = statusDocument(event.data);
    if (doc === null) return;
    state.events += 1;
    onDoc(doc);
    if (TERMINAL.has(doc.status)) terminal = true;
  });
  parser.lastEventId = state.lastEventId;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    while (!terminal) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
  } finally {
    state.lastEventId = parser.lastEventId;
    if (parser.retry !== null) state.retryMs = parser.retry;
    reader.cancel().catch(() => {});
  }
  return terminal;
}

async function pollOnce(id, onDoc, signal) {
  const response = await api(jobUrl(id), { signal });
  const doc = await response.json();
  onDoc(doc);
  return { doc, wait: retryAfterSeconds(response, 2) };
}

// Follow a job until it is terminal or ``signal`` aborts. ``onDoc(doc)`` per
// status document, ``onMode('stream' | 'polling', seconds)`` when the way of
// watching changes. Throws ApiError for 401/404/410 and the like.
export async function watchJob(id, { onDoc, onMode = () => {}, signal }) {
  const state = { lastEventId: '', retryMs: 2000, events: 0 };
  let useStream = true;
  let failures = 0;
  while (!signal.aborted) {
    if (useStream) {
      try {
        const seen = state.events;
        if (await streamOnce(id, state, onDoc, onMode, signal)) return;
        // The stream ended before the job did: resume from the last event id.
        failures = state.events > seen ? 0 : failures + 1;
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof StreamUnavailable) {
          useStream = false;
          continue;
        }
        if (error instanceof ApiError && error.status !== 503) throw error;
        failures += 1;
      }
      if (failures >= MAX_STREAM_FAILURES) useStream = false;
      else await sleep(state.retryMs * Math.max(1, failures), signal).catch(() => {});
      continue;
    }
    let seconds;
    try {
      const { doc, wait } = await pollOnce(id, onDoc, signal);
      if (TERMINAL.has(doc.status)) return;
      seconds = Math.min(MAX_POLL_S, Math.max(MIN_POLL_S, wait));
      onMode('polling', seconds);
    } catch (error) {
      if (signal.aborted) return;
      // Busy (429) or Redis away (503): the API says when to ask again. A
      // network error: ask again a little later. Anything else is an answer.
      if (error instanceof ApiError && error.status !== 429 && error.status !== 503) throw error;
      seconds = Math.min(MAX_POLL_S, Math.max(MIN_POLL_S, error.retryAfter ?? 3));
      onMode('retrying', seconds);
    }
    try {
      await sleep(seconds * 1000, signal);
    } catch {
      return;
    }
  }
}
