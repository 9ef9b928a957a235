// /console: the tenant's jobs, newest first (GET /v1/jobs), filtered by status
// and type, paged by the API's cursor, refreshed while the page is open.

import { apiJson, getJobTypes } from '../api.js';
import { STATUSES, TERMINAL, age, fill, h, jobPath, localTime, sleep, statusBadge } from '../dom.js';

const PAGE_SIZE = 20;
const REFRESH_MS = 2500;

function progressCell(job) {
  return h(
    'td',
    { class: 'progress-cell' },
    h('progress', { max: 100, value: job.progress, 'aria-label': `Progress of ${job.id}` }),
    h('span', { class: 'percent' }, `${job.progress} %`),
  );
}

function row(job) {
  return h(
    'tr',
    { dataset: { jobId: job.id, status: job.status } },
    h('th', { scope: 'row' }, h('a', { href: jobPath(job.id), class: 'mono' }, job.id)),
    h('td', {}, job.type),
    h('td', { class: 'status-cell' }, statusBadge(job.status)),
    progressCell(job),
    h('td', {}, h('time', { datetime: job.created_at, title: localTime(job.created_at) }, age(job.created_at))),
  );
}

// Update the rows in place where the same jobs are shown, so that focus and
// the reader's place survive a refresh.
function update(tbody, jobs) {
  const current = [...tbody.rows].map((tr) => tr.dataset.jobId);
  if (current.length === jobs.length && current.every((id, i) => id === jobs[i].id)) {
    jobs.forEach((job, i) => {
      const tr = tbody.rows[i];
      if (tr.dataset.status !== job.status) {
        tr.dataset.status = job.status;
        tr.querySelector('.status-cell').replaceChildren(statusBadge(job.status));
      }
      tr.querySelector('progress').value = job.progress;
      tr.querySelector('.percent').textContent = `${job.progress} %`;
      tr.querySelector('time').textContent = age(job.created_at);
    });
    return;
  }
  const focused = document.activeElement?.closest?.('tr')?.dataset.jobId;
  fill(tbody, ...jobs.map(row));
  if (focused) tbody.querySelector(`tr[data-job-id="${CSS.escape(focused)}"] a`)?.focus();
}

export async function listView(main, { signal, query, navigate }) {
  const status = query.get('status') || '';
  const type = query.get('type') || '';
  const cursor = query.get('cursor') || '';
  // Earlier pages' cursors, for "Newer jobs": the API's cursor only goes on.
  const trail = (query.get('trail') || '').split(',').filter(Boolean);

  const heading = h('h1', { tabindex: -1 }, 'Jobs');
  const statusSelect = h(
    'select',
    { id: 'filter-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)),
  );
  const typeSelect = h('select', { id: 'filter-type', name: 'type' }, h('option', { value: '' }, 'Any type'));
  if (type) typeSelect.append(h('option', { value: type, selected: true }, type));
  const filters = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter jobs' },
    h('div', { class: 'field' }, h('label', { for: 'filter-status' }, 'Status'), statusSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-type' }, 'Type'), typeSelect),
    h('button', { type: 'submit', class: 'button' }, 'Apply filters'),
  );
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (statusSelect.value) next.set('status', statusSelect.value);
    if (typeSelect.value) next.set('type', typeSelect.value);
    navigate(`/console${next.size ? `?${next}` : ''}`);
  });

  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'data jobs', id: 'jobs-table' },
    h('caption', { id: 'jobs-caption' }, 'Your jobs, newest first'),
    h(
      'thead',
      {},
      h('tr', {}, ['Job', 'Type', 'Status', 'Progress', 'Created'].map((c) => h('th', { scope: 'col' }, c))),
    ),
    tbody,
  );
  const empty = h('p', { class: 'empty', hidden: true });
  const problem = h('p', { class: 'notice notice-error', role: 'alert', hidden: true });
  const updated = h('p', { class: 'hint', 'aria-live': 'off' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of jobs' });

  fill(main, 
    h('div', { class: 'page-head' }, heading, h('a', { href: '/console/new', class: 'button button-primary' }, 'New job')),
    filters,
    problem,
    h('div', { class: 'table-wrap', role: 'region', 'aria-labelledby': 'jobs-caption', tabindex: 0 }, table),
    empty,
    pager,
    updated,
  );

  getJobTypes(signal)
    .then((types) => {
      for (const t of types) {
        if (t.name !== type) typeSelect.append(h('option', { value: t.name }, t.name));
      }
    })
    .catch(() => {});

  function pageLink(label, params) {
    const next = new URLSearchParams();
    if (status) next.set('status', status);
    if (type) next.set('type', type);
    for (const [k, v] of Object.entries(params)) if (v) next.set(k, v);
    return h('a', { href: `/console${next.size ? `?${next}` : ''}`, class: 'button' }, label);
  }

  let first = true;
  while (!signal.aborted) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (status) params.set('status', status);
    if (type) params.set('type', type);
    if (cursor) params.set('cursor', cursor);
    try {
      const { data } = await apiJson(`/v1/jobs?${params}`, { signal });
      problem.hidden = true;
      update(tbody, data.jobs);
      table.hidden = data.jobs.length === 0;
      empty.hidden = data.jobs.length > 0;
      fill(empty, 
        status || type || cursor
          ? 'No jobs on this page match these filters.'
          : ['No jobs yet. ', h('a', { href: '/console/new' }, 'Submit one'), '.'],
      );
      const links = [];
      if (cursor) {
        links.push(pageLink('Newest jobs', {}));
        if (trail.length > 0) {
          links.push(pageLink('Newer jobs', { cursor: trail.at(-1), trail: trail.slice(0, -1).join(',') }));
        }
      }
      if (data.next_cursor) {
        links.push(pageLink('Older jobs', { cursor: data.next_cursor, trail: [...trail, cursor].filter(Boolean).join(',') }));
      }
      if (first || !pager.contains(document.activeElement)) fill(pager, ...links);
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every few seconds.`;
      first = false;
    } catch (error) {
      if (signal.aborted) return;
      problem.textContent = `Could not load the jobs: ${error.message}`;
      problem.hidden = false;
    }
    // Nothing changes on a page of finished jobs but their age: refresh slower.
    const live = [...tbody.rows].some((tr) => !TERMINAL.has(tr.dataset.status));
    try {
      await sleep(live || !cursor ? REFRESH_MS : REFRESH_MS * 4, signal);
    } catch {
      return;
    }
  }
}
