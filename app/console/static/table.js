// A result as a table, paged in the page (a result may have 100,000 rows).

import { fill, h } from './dom.js';

const PAGE_SIZE = 50;

// {columns, rows}, a list of flat objects, or a list of scalars, as columns
// and rows of cells; null for anything else (shown as JSON instead).
export function tabulate(result) {
  if (result && Array.isArray(result.columns) && Array.isArray(result.rows)) {
    return { columns: result.columns.map(String), rows: result.rows };
  }
  if (!Array.isArray(result)) return null;
  if (result.every((row) => row !== null && typeof row === 'object' && !Array.isArray(row))) {
    const columns = [];
    const seen = new Set();
    for (const row of result) {
      for (const key of Object.keys(row)) {
        if (!seen.has(key)) {
          seen.add(key);
          columns.push(key);
        }
      }
    }
    return { columns, rows: result.map((row) => columns.map((c) => row[c])) };
  }
  if (result.every((row) => row === null || typeof row !== 'object')) {
    return { columns: ['value'], rows: result.map((value) => [value]) };
  }
  if (result.every((row) => Array.isArray(row))) {
    const width = Math.max(0, ...result.map((row) => row.length));
    return { columns: Array.from({ length: width }, (_, i) => `#${i + 1}`), rows: result };
  }
  return null;
}

function cell(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

let tableCount = 0;

// ``{el, show(table), rowCount}``: show() keeps the page the reader is on.
export function pagedTable(caption) {
  tableCount += 1;
  const id = `table-${tableCount}`;
  let data = { columns: [], rows: [] };
  let page = 0;
  const head = h('thead');
  const body = h('tbody');
  const table = h('table', { class: 'data', id }, h('caption', {}, caption), head, body);
  const status = h('p', { class: 'pager-status', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'button', 'aria-controls': id }, 'Previous rows');
  const next = h('button', { type: 'button', class: 'button', 'aria-controls': id }, 'Next rows');
  const pager = h('div', { class: 'pager' }, prev, status, next);
  const el = h('div', { class: 'table-block' }, h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-labelledby': `${id}-label` }, table), pager);
  table.querySelector('caption').id = `${id}-label`;

  function pages() {
    return Math.max(1, Math.ceil(data.rows.length / PAGE_SIZE));
  }

  function render() {
    page = Math.min(page, pages() - 1);
    const start = page * PAGE_SIZE;
    const rows = data.rows.slice(start, start + PAGE_SIZE);
    fill(head, h('tr', {}, data.columns.map((c) => h('th', { scope: 'col' }, c))));
    fill(body, ...rows.map((row) => h('tr', {}, row.map((v) => h('td', {}, cell(v))))));
    const total = data.rows.length;
    status.textContent = total
      ? `Rows ${start + 1}–${start + rows.length} of ${total}`
      : 'No rows yet';
    prev.disabled = page === 0;
    next.disabled = page >= pages() - 1;
    pager.hidden = total <= PAGE_SIZE;
  }

  prev.addEventListener('click', () => {
    page -= 1;
    render();
  });
  next.addEventListener('click', () => {
    page += 1;
    render();
  });

  return {
    el,
    show(tabular) {
      data = tabular;
      render();
    },
    get rowCount() {
      return data.rows.length;
    },
  };
}
