// The API as the console uses it: the key from the tab's session storage as a
// Bearer header (never in a URL), problem+json errors as ApiError.

const KEY_NAME = 'jobgate.apiKey';

export const authOn =
  document.querySelector('meta[name="jobgate-auth"]')?.getAttribute('content') === 'on';

export function getKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY_NAME);
}

export function signedIn() {
  return !authOn || Boolean(getKey());
}

let unauthorizedHandler = () => {};

// Called when the API answers 401: the key was removed or is wrong.
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export function authHeaders(extra = {}, key = getKey()) {
  const headers = { ...extra };
  if (authOn && key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || `HTTP_${status}`;
    this.title = problem.title || '';
    this.errors = problem.errors || null;
    this.jobError = problem.error || null;
    this.retryAfter = retryAfter;
  }

  static async from(response) {
    let problem = {};
    const type = response.headers.get('Content-Type') || '';
    if (type.includes('json')) {
      try {
        problem = await response.json();
      } catch {
        problem = {};
      }
    }
    return new ApiError(response.status, problem, retryAfterSeconds(response, null));
  }
}

export function retryAfterSeconds(response, fallback) {
  const value = response.headers.get('Retry-After');
  if (value === null) return fallback;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? fallback : Math.max(0, (date - Date.now()) / 1000);
}

// fetch() a /v1 path; throws ApiError for any answer that is not 2xx.
export async function api(path, { method = 'GET', body, headers = {}, signal, key } = {}) {
  const init = {
    method,
    headers: authHeaders({ Accept: 'application/json', ...headers }, key ?? getKey()),
    signal,
    cache: 'no-store',
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await ApiError.from(response);
    if (response.status === 401 && key === undefined) unauthorizedHandler(error);
    throw error;
  }
  return response;
}

export async function apiJson(path, options) {
  const response = await api(path, options);
  const data = response.status === 204 ? null : await response.json();
  return { data, response };
}

let jobTypes = null;

// GET /v1/job-types, once per page load.
export async function getJobTypes(signal) {
  if (jobTypes === null) {
    const { data } = await apiJson('/v1/job-types', { signal });
    jobTypes = data.job_types;
  }
  return jobTypes;
}

export function jobUrl(id, suffix = '') {
  return `/v1/jobs/${encodeURIComponent(id)}${suffix}`;
}

// A download that needs the Authorization header: fetch, then a Blob behind an
// object URL and a click on a temporary <a download>.
export async function download(path, filename, signal) {
  const response = await api(path, { headers: { Accept: '*/*' }, signal });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
