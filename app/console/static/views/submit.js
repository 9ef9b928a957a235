// /console/new: pick a job type, fill the form made from its params schema,
// submit (POST /v1/jobs); the API's 422 field errors go next to their fields.

import { ApiError, apiJson, getJobTypes } from '../api.js';
import { fill, h, jobPath } from '../dom.js';
import { collect, objectFields, schemaField } from '../form.js';

// The submit options every job type shares (docs/api.md, POST /v1/jobs); their
// bounds are the deployment's, checked by the API.
const OPTIONS = {
  poll_timeout: {
    type: 'integer',
    title: 'Poll timeout (s)',
    description:
      'The job is cancelled when nobody has looked at it for this long (this page looks while it is open); 0 lets it run to the end unwatched.',
  },
  retention: { type: 'integer', title: 'Retention (s)', description: 'How long the finished job and its result stay readable.' },
  id: {
    type: 'string',
    title: 'Job id',
    maxLength: 64,
    description: 'Your own id (letters, digits, . _ -); submitting the same id again returns the same job.',
  },
};

export async function submitView(main, { signal, query, navigate }) {
  const heading = h('h1', { tabindex: -1 }, 'New job');
  fill(main, heading, h('p', { class: 'loading' }, 'Loading the job types…'));
  const types = await getJobTypes(signal);
  const wanted = query.get('type');
  const initial = types.find((t) => t.name === wanted) || types.find((t) => t.name === 'demo.count') || types[0];

  const typeSelect = h(
    'select',
    { id: 'job-type', name: 'type', 'aria-describedby': 'job-type-description' },
    types.map((t) => h('option', { value: t.name, selected: t === initial }, t.name)),
  );
  const typeDescription = h('p', { class: 'hint', id: 'job-type-description' });
  const typeError = h('p', { class: 'field-error', id: 'job-type-error', hidden: true });
  const paramsSet = h('fieldset', { class: 'params' });
  const optionFields = Object.entries(OPTIONS).map(([name, schema]) => schemaField(name, schema, { prefix: 'opt' }));
  const summary = h('div', { class: 'notice notice-error', role: 'alert', tabindex: -1, hidden: true });
  const submit = h('button', { type: 'submit', class: 'button button-primary' }, 'Submit job');
  const form = h(
    'form',
    { class: 'submit-form', novalidate: true, 'aria-labelledby': 'new-job-heading' },
    summary,
    h('div', { class: 'field' }, h('label', { for: 'job-type' }, 'Job type'), typeSelect, typeDescription, typeError),
    paramsSet,
    h('details', { class: 'options' }, h('summary', {}, 'Options: poll timeout, retention, id'), optionFields.map((f) => f.el)),
    h('div', { class: 'actions' }, submit),
  );
  heading.id = 'new-job-heading';
  fill(main, heading, form);

  let paramFields = [];
  function showType() {
    const jobType = types.find((t) => t.name === typeSelect.value);
    typeDescription.textContent = [
      jobType.description,
      `Runs for at most ${jobType.max_runtime} s${jobType.tabular ? '; its result is a table' : ''}.`,
    ]
      .filter(Boolean)
      .join(' ');
    paramFields = objectFields(jobType.params_schema, 'param');
    fill(paramsSet, 
      h('legend', {}, `Parameters of ${jobType.name}`),
      paramFields.length ? paramFields.map((f) => f.el) : h('p', { class: 'hint' }, 'This job type takes no parameters.'),
    );
    showErrors({});
  }
  typeSelect.addEventListener('change', showType);
  showType();

  function showErrors(errors, detail) {
    const params = errors.params && typeof errors.params === 'object' && !Array.isArray(errors.params) ? errors.params : {};
    const listed = [];
    for (const field of paramFields) {
      field.setError(params[field.name]);
      if (params[field.name]) listed.push([field, params[field.name]]);
    }
    for (const field of optionFields) {
      field.setError(errors[field.name]);
      if (errors[field.name]) listed.push([field, errors[field.name]]);
    }
    typeError.textContent = errors.type ? [].concat(errors.type).join(' ') : '';
    typeError.hidden = !errors.type;
    const other = [];
    for (const [name, messages] of Object.entries(errors)) {
      if (!['params', 'type', ...Object.keys(OPTIONS)].includes(name)) other.push(`${name}: ${[].concat(messages).join(' ')}`);
    }
    if (Array.isArray(errors.params)) other.push(`params: ${errors.params.join(' ')}`);
    for (const [name, messages] of Object.entries(params)) {
      if (!paramFields.some((f) => f.name === name)) other.push(`${name}: ${[].concat(messages).join(' ')}`);
    }
    if (!detail && listed.length === 0 && other.length === 0 && !errors.type) {
      summary.hidden = true;
      return;
    }
    fill(summary, 
      h('p', {}, h('strong', {}, detail || 'The job was not submitted.')),
      listed.length || other.length || errors.type
        ? h(
            'ul',
            {},
            listed.map(([field, messages]) =>
              h('li', {}, h('a', { href: `#${field.input.id}`, 'data-focus': field.input.id }, `${field.name}: ${[].concat(messages).join(' ')}`)),
            ),
            errors.type ? h('li', {}, `type: ${[].concat(errors.type).join(' ')}`) : null,
            other.map((text) => h('li', {}, text)),
          )
        : null,
    );
    summary.hidden = false;
    summary.focus();
  }

  summary.addEventListener('click', (event) => {
    const link = event.target.closest('a[data-focus]');
    if (link) {
      event.preventDefault();
      document.getElementById(link.dataset.focus)?.focus();
    }
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const params = collect(paramFields);
    const options = collect(optionFields);
    if (Object.keys(params.problems).length || Object.keys(options.problems).length) {
      showErrors({ ...options.problems, params: params.problems }, 'Some fields need a fix.');
      return;
    }
    const body = { type: typeSelect.value, params: params.value, ...options.value, wait: 0 };
    submit.disabled = true;
    submit.textContent = 'Submitting…';
    try {
      const { data } = await apiJson('/v1/jobs', { method: 'POST', body, signal });
      navigate(jobPath(data.id));
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.errors) {
        showErrors(error.errors, `The job was not submitted: the API found a problem (${error.status} ${error.code}).`);
      }
      else showErrors({}, `The job was not submitted: ${error.message}`);
    } finally {
      submit.disabled = false;
      submit.textContent = 'Submit job';
    }
  });
}
