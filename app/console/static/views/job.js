// /console/jobs/{id}: status, progress and message live (events stream, else
// polling); partial rows while it runs; the result as a table and downloads
// once DONE; the error once FAILED; Cancel with a confirmation; 404/410 pages.

import { ApiError, api, apiJson, download, jobUrl } from '../api.js';
import { TERMINAL, age, fill, h, localTime, statusBadge } from '../dom.js';
import { watchJob } from '../events.js';
import { pagedTable, tabulate } from '../table.js';

const PARTIAL_EVERY_MS = 1500;
const FORMATS = [
  ['csv', 'CSV'],
  ['ndjson', 'NDJSON'],
  ['json', 'JSON'],
];

export function goneView(main, id, error) {
  const expired = error.status === 410;
  fill(main, 
    h('h1', { tabindex: -1 }, expired ? 'This job has expired' : 'No such job'),
    h(
      'p',
      {},
      expired
        ? `Job ${id} finished and its retention time has passed, or it was deleted: its status and result are gone for good.`
        : `There is no job ${id} for your API key. The id may be mistyped, the job may belong to another tenant, or it expired so long ago that even its record is gone.`,
    ),
    h('p', { class: 'hint' }, `The API answered ${error.status} ${error.code}: ${error.message}`),
    h('p', {}, h('a', { href: '/console' }, 'Back to your jobs'), ' · ', h('a', { href: '/console/new' }, 'Submit a new job')),
  );
}

function term(label, value) {
  return [h('dt', {}, label), h('dd', {}, value)];
}

export async function jobView(main, { signal, params }) {
  const id = params[0];
  const heading = h('h1', { tabindex: -1 }, 'Job ', h('span', { class: 'mono' }, id));
  const badge = h('span', { id: 'job-status' });
  const progress = h('progress', { id: 'job-progress', max: 100, value: 0, 'aria-labelledby': 'job-progress-label' });
  const percent = h('span', { class: 'percent', id: 'job-percent' }, '0 %');
  const message = h('p', { id: 'job-message', class: 'message' });
  // What a screen reader hears: each change of status and every tenth percent,
  // not every step (the visible message may change many times a second).
  const announcer = h('p', { id: 'job-announce', class: 'visually-hidden', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });
  const details = h('dl', { class: 'details' });
  const mode = h('p', { class: 'hint', id: 'watch-mode' });
  const cancel = h('button', { type: 'button', class: 'button button-danger', id: 'cancel-job', hidden: true }, 'Cancel job');
  const downloads = h('div', { class: 'downloads', hidden: true }, h('h2', {}, 'Download the result'));
  const errorBox = h('section', { class: 'notice notice-error', id: 'job-error', hidden: true, 'aria-labelledby': 'job-error-title' });
  const actionProblem = h('p', { class: 'notice notice-error', role: 'alert', hidden: true });
  const resultSection = h('section', { class: 'result', 'aria-labelledby': 'result-heading', hidden: true });
  const resultHeading = h('h2', { id: 'result-heading' }, 'Result');
  const table = pagedTable('Result rows');
  const jsonView = h('pre', { class: 'json', tabindex: 0, hidden: true });
  resultSection.append(resultHeading, table.el, jsonView);

  const dialog = h(
    'dialog',
    { id: 'cancel-dialog', 'aria-labelledby': 'cancel-dialog-title' },
    h('form', { method: 'dialog' },
      h('h2', { id: 'cancel-dialog-title' }, 'Cancel this job?'),
      h('p', {}, 'The job stops at its next step and ends as FAILED with CANCELLED_BY_USER. This cannot be undone.'),
      h('div', { class: 'actions' },
        h('button', { value: 'keep', class: 'button', autofocus: true }, 'Keep it running'),
        h('button', { value: 'cancel', class: 'button button-danger', id: 'confirm-cancel' }, 'Yes, cancel the job'),
      ),
    ),
  );

  fill(main, 
    h('p', { class: 'crumbs' }, h('a', { href: '/console' }, '← All jobs')),
    heading,
    h('section', { class: 'job-status', 'aria-label': 'Status' },
      h('p', { class: 'status-line' }, 'Status: ', badge),
      h('div', { class: 'progress-line' }, h('label', { id: 'job-progress-label', for: 'job-progress' }, 'Progress'), progress, percent),
      message,
      announcer,
      mode,
      h('div', { class: 'actions' }, cancel),
      actionProblem,
    ),
    errorBox,
    downloads,
    resultSection,
    h('section', { 'aria-labelledby': 'details-heading' }, h('h2', { id: 'details-heading' }, 'Details'), details),
    dialog,
  );

  let last = null;
  let announcedTenth = -1;
  let partialAt = 0;
  let partialBusy = false;
  let partialTimer = 0;
  let resultShown = false;

  function showDetails(doc) {
    const items = [term('Type', doc.type), term('Created', h('time', { datetime: doc.created_at, title: localTime(doc.created_at) }, `${localTime(doc.created_at)} (${age(doc.created_at)})`))];
    if (doc.started_at) items.push(term('Started', localTime(doc.started_at)));
    if (doc.finished_at) items.push(term('Finished', localTime(doc.finished_at)));
    if (doc.queue_position !== undefined) items.push(term('Queue position', String(doc.queue_position)));
    if (doc.attempt !== undefined) items.push(term('Attempt', String(doc.attempt)));
    if (doc.poll_deadline) items.push(term('Cancelled if not watched by', localTime(doc.poll_deadline)));
    if (doc.expires_at) items.push(term('Kept until', localTime(doc.expires_at)));
    fill(details, ...items.flat());
  }

  // While the job runs, its rows so far, every PARTIAL_EVERY_MS.
  async function showPartial() {
    if (partialBusy || Date.now() - partialAt < PARTIAL_EVERY_MS * Math.max(1, Math.ceil(table.rowCount / 5000))) return;
    partialBusy = true;
    partialAt = Date.now();
    clearTimeout(partialTimer);
    try {
      const { data } = await apiJson(jobUrl(id, '/result?partial=true&format=json'), { signal });
      const rows = tabulate(data);
      if (rows && !resultShown && rows.rows.length > 0) {
        resultHeading.textContent = `Rows so far (${rows.rows.length})`;
        table.show(rows);
        resultSection.hidden = false;
      }
    } catch {
      // Partial rows are a bonus: the status keeps coming either way.
    } finally {
      partialBusy = false;
      if (!signal.aborted && last?.status === 'RUNNING') {
        // Each read sends every row so far: ask less often as they pile up.
        const every = PARTIAL_EVERY_MS * Math.max(1, Math.ceil(table.rowCount / 5000));
        partialTimer = setTimeout(showPartial, every);
      }
    }
  }
  signal.addEventListener('abort', () => clearTimeout(partialTimer));

  async function showResult(doc) {
    resultShown = true;
    let result = doc.result;
    if (result === undefined) {
      const { data } = await apiJson(jobUrl(id, '/result'), { signal });
      result = data;
    }
    const rows = tabulate(result);
    resultSection.hidden = false;
    if (rows) {
      resultHeading.textContent = `Result (${rows.rows.length} rows)`;
      table.el.hidden = false;
      jsonView.hidden = true;
      table.show(rows);
    } else {
      resultHeading.textContent = 'Result';
      table.el.hidden = true;
      jsonView.hidden = false;
      jsonView.textContent = JSON.stringify(result, null, 2);
    }
    fill(downloads, 
      h('h2', {}, 'Download the result'),
      h('div', { class: 'actions' },
        FORMATS.filter(([fmt]) => rows || fmt === 'json').map(([fmt, label]) =>
          h('button', { type: 'button', class: 'button', dataset: { format: fmt }, onclick: () => save(fmt) }, `Download ${label}`),
        ),
      ),
    );
    downloads.hidden = false;
  }

  async function save(fmt) {
    actionProblem.hidden = true;
    try {
      await download(jobUrl(id, `/result?format=${fmt}`), `${id}.${fmt}`, signal);
    } catch (error) {
      actionProblem.textContent = `Download failed: ${error.message}`;
      actionProblem.hidden = false;
    }
  }

  function showError(error) {
    fill(errorBox, 
      h('h2', { id: 'job-error-title' }, 'The job failed'),
      h('dl', { class: 'details' },
        term('Code', h('code', { id: 'error-code' }, error.code)),
        term('Message', error.message || ''),
        term('Retryable', error.retryable ? 'Yes: submitting it again may work' : 'No'),
      ),
    );
    errorBox.hidden = false;
  }

  function onDoc(doc) {
    // A terminal job never changes again: a slower, older answer (a poll in
    // flight while Cancel answered) must not bring it back to life.
    if (last && TERMINAL.has(last.status)) return;
    const changed = !last || last.status !== doc.status;
    last = doc;
    document.title = `${doc.status} ${doc.progress} % · ${id} · Jobgate console`;
    if (changed) fill(badge, statusBadge(doc.status));
    progress.value = doc.progress;
    percent.textContent = `${doc.progress} %`;
    if (message.textContent !== doc.message) message.textContent = doc.message || '';
    const tenth = Math.floor(doc.progress / 10);
    if (changed || tenth !== announcedTenth) {
      announcedTenth = tenth;
      announcer.textContent = `${doc.status}, ${doc.progress} %${doc.message ? `: ${doc.message}` : ''}`;
    }
    showDetails(doc);
    cancel.hidden = TERMINAL.has(doc.status);
    if (doc.status === 'RUNNING') showPartial();
    if (doc.status === 'DONE' && !resultShown) {
      showResult(doc).catch((error) => {
        resultShown = false;
        if (!signal.aborted) {
          actionProblem.textContent = `Could not load the result: ${error.message}`;
          actionProblem.hidden = false;
        }
      });
    }
    if (doc.status === 'FAILED' && doc.error) {
      showError(doc.error);
      resultSection.hidden = true;
    }
  }

  function onMode(how, seconds) {
    mode.textContent =
      how === 'stream'
        ? 'Live: following the job’s event stream.'
        : how === 'retrying'
          ? `The API is busy or unreachable; trying again in ${seconds} s.`
          : `Live: asking the API every ${seconds} s, as it advises.`;
    mode.dataset.mode = how;
    if (how !== 'retrying') mode.dataset.via = how;
  }

  cancel.addEventListener('click', () => dialog.showModal());
  dialog.addEventListener('close', async () => {
    if (dialog.returnValue !== 'cancel') return;
    dialog.returnValue = '';
    actionProblem.hidden = true;
    try {
      const response = await api(jobUrl(id), { method: 'DELETE', signal });
      if (response.status === 200) onDoc(await response.json());
    } catch (error) {
      if (signal.aborted) return;
      actionProblem.textContent = `Could not cancel: ${error.message}`;
      actionProblem.hidden = false;
    }
  });

  try {
    await watchJob(id, { onDoc, onMode, signal });
    if (last && TERMINAL.has(last.status)) {
      mode.textContent = last.status === 'DONE' ? 'Finished.' : 'Ended.';
      mode.dataset.mode = 'finished';
    }
  } catch (error) {
    if (signal.aborted) return;
    if (error instanceof ApiError && (error.status === 404 || error.status === 410)) {
      goneView(main, id, error);
      main.querySelector('h1').focus();
      return;
    }
    actionProblem.textContent = `Could not follow the job: ${error.message}`;
    actionProblem.hidden = false;
  }
}
