// The console's entry point: client-side routes under /console, sign-in with
// an API key when the API asks for one, and the header's navigation.

import { ApiError, api, authOn, clearKey, getKey, onUnauthorized, setKey, signedIn } from './api.js';
import { fill, h } from './dom.js';
import { jobView } from './views/job.js';
import { listView } from './views/list.js';
import { submitView } from './views/submit.js';

const ROUTES = [
  [/^\/console\/?$/, listView, 'Jobs', 'list'],
  [/^\/console\/new\/?$/, submitView, 'New job', 'new'],
  [/^\/console\/jobs\/([^/]+)\/?$/, jobView, 'Job', null],
];

const main = document.getElementById('main');
const signOut = document.getElementById('sign-out');
let current = null;
let signInNotice = '';

function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render({ focus: true });
}

function notFoundView(mainEl) {
  fill(mainEl, 
    h('h1', { tabindex: -1 }, 'Page not found'),
    h('p', {}, 'The console has no page at this address. ', h('a', { href: '/console' }, 'See your jobs'), '.'),
  );
}

function signInView(mainEl) {
  const input = h('input', {
    id: 'api-key',
    name: 'api-key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'api-key-hint',
  });
  const problem = h('p', { class: 'field-error', id: 'api-key-error', role: 'alert', hidden: !signInNotice }, signInNotice);
  const button = h('button', { type: 'submit', class: 'button button-primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'sign-in', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'api-key' }, 'API key'),
      input,
      h('p', { class: 'hint', id: 'api-key-hint' }, 'The key your operator gave you. It stays in this browser tab only (session storage) and is sent to the API as an Authorization header.'),
      problem,
    ),
    h('div', { class: 'actions' }, button),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      problem.textContent = 'Enter your API key.';
      problem.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      await api('/v1/job-types', { key });
      setKey(key);
      signInNotice = '';
      render({ focus: true });
    } catch (error) {
      problem.textContent =
        error instanceof ApiError && error.status === 401
          ? 'The API did not accept this key.'
          : `Could not reach the API: ${error.message}`;
      problem.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  fill(mainEl, 
    h('h1', { tabindex: -1 }, 'Sign in'),
    h('p', {}, 'Jobgate needs your API key to show your jobs.'),
    form,
  );
  document.title = 'Sign in · Jobgate console';
  input.focus();
}

async function render({ focus = false } = {}) {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  signOut.hidden = !(authOn && getKey());
  if (!signedIn()) {
    markNav(null);
    signInView(main);
    return;
  }
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  if (!route) {
    markNav(null);
    notFoundView(main);
    return;
  }
  const [pattern, view, title, nav] = route;
  const params = pattern.exec(path).slice(1).map(decodeURIComponent);
  document.title = `${title}${params[0] ? ` ${params[0]}` : ''} · Jobgate console`;
  markNav(nav);
  const rendering = view(main, { signal: controller.signal, params, query, navigate });
  if (focus) {
    // Move focus to the new page's heading, as a page load would.
    queueMicrotask(() => main.querySelector('h1')?.focus());
  }
  try {
    await rendering;
  } catch (error) {
    if (controller.signal.aborted) return;
    main.append(h('p', { class: 'notice notice-error', role: 'alert' }, `Something went wrong: ${error.message}`));
  }
}

function markNav(which) {
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === which) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

onUnauthorized(() => {
  clearKey();
  signInNotice = 'Your API key was refused: sign in again.';
  render({ focus: true });
});

signOut.addEventListener('click', () => {
  clearKey();
  signInNotice = '';
  navigate('/console');
});

document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.hasAttribute('download') || link.target || link.hasAttribute('data-external')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/console')) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', () => render({ focus: true }));
render();
