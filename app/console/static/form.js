// A form from a JSON schema (a job type's params_schema from /v1/job-types):
// one labelled control per property, with its type, bounds, default and
// description; the API's 422 field errors are shown next to their fields.

import { h } from './dom.js';

function mainType(schema) {
  const type = schema.type;
  if (Array.isArray(type)) return type.find((t) => t !== 'null') || 'string';
  if (type) return type;
  if (schema.enum) return 'enum';
  if (schema.properties) return 'object';
  return 'json';
}

function describe(schema, type, required) {
  const parts = [];
  const noun = {
    integer: 'A whole number',
    number: 'A number',
    string: 'Text',
    boolean: 'Yes or no',
    array: 'A list, one item a line',
  }[type];
  let bounds = '';
  if (schema.minimum !== undefined && schema.maximum !== undefined) {
    bounds = ` from ${schema.minimum} to ${schema.maximum}`;
  } else if (schema.minimum !== undefined) bounds = ` of at least ${schema.minimum}`;
  else if (schema.maximum !== undefined) bounds = ` of at most ${schema.maximum}`;
  if (schema.minLength !== undefined || schema.maxLength !== undefined) {
    bounds = ` of ${schema.minLength ?? 0} to ${schema.maxLength ?? '∞'} characters`;
  }
  if (noun) parts.push(`${noun}${bounds}.`);
  else if (type === 'object' || type === 'json') parts.push('JSON.');
  if (schema.pattern) parts.push(`Pattern: ${schema.pattern}.`);
  if (schema.default !== undefined && type !== 'boolean') {
    parts.push(`Default: ${JSON.stringify(schema.default)}.`);
  }
  parts.push(required ? 'Required.' : 'Optional.');
  if (schema.description) parts.unshift(schema.description);
  return parts.join(' ');
}

// One control. ``read()`` is {present, value} or {problem}; ``setError(messages)``.
export function schemaField(name, schema, { required = false, prefix = 'f' } = {}) {
  const id = `${prefix}-${name}`.replace(/[^A-Za-z0-9_-]/g, '-');
  const type = schema.enum ? 'enum' : mainType(schema);
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const labelText = [schema.title || name, required ? h('span', { class: 'required' }, ' (required)') : null];
  const common = { id, name, 'aria-describedby': hintId };
  if (required) common['aria-required'] = 'true';
  let input;
  let read;

  if (type === 'boolean') {
    input = h('input', { ...common, type: 'checkbox', checked: schema.default === true });
    read = () => ({ present: true, value: input.checked });
  } else if (type === 'enum') {
    const options = schema.enum.map((value) =>
      h('option', { value: JSON.stringify(value), selected: value === schema.default }, String(value)),
    );
    const empty = required && schema.default === undefined ? '— choose —' : '(not set)';
    input = h('select', common, schema.default === undefined ? h('option', { value: '' }, empty) : null, options);
    read = () => (input.value === '' ? { present: false } : { present: true, value: JSON.parse(input.value) });
  } else if (type === 'integer' || type === 'number') {
    input = h('input', {
      ...common,
      type: 'number',
      inputmode: type === 'integer' ? 'numeric' : 'decimal',
      step: type === 'integer' ? 1 : 'any',
      min: schema.minimum,
      max: schema.maximum,
      value: schema.default ?? '',
    });
    read = () => {
      const raw = input.value.trim();
      if (raw === '') {
        // type=number empties what it cannot parse: say so rather than omit it.
        if (input.validity.badInput) return { problem: 'Not a number.' };
        return { present: false };
      }
      const value = Number(raw);
      return { present: true, value: Number.isFinite(value) ? value : raw };
    };
  } else if (type === 'string') {
    const long = (schema.maxLength ?? 0) > 200;
    input = h(long ? 'textarea' : 'input', {
      ...common,
      type: long ? undefined : 'text',
      maxlength: schema.maxLength,
      value: schema.default ?? '',
      autocomplete: 'off',
      spellcheck: 'false',
    });
    read = () => (input.value === '' ? { present: false } : { present: true, value: input.value });
  } else if (type === 'array' && ['string', 'integer', 'number'].includes(mainType(schema.items || {}))) {
    const itemType = mainType(schema.items);
    input = h('textarea', { ...common, rows: 4, spellcheck: 'false' });
    if (Array.isArray(schema.default)) input.value = schema.default.join('\n');
    read = () => {
      const items = input.value.split('\n').map((s) => s.trim()).filter((s) => s !== '');
      if (items.length === 0) return { present: false };
      const numeric = itemType !== 'string';
      return { present: true, value: items.map((s) => (numeric && Number.isFinite(Number(s)) ? Number(s) : s)) };
    };
  } else {
    input = h('textarea', { ...common, rows: 4, spellcheck: 'false', class: 'mono' });
    if (schema.default !== undefined) input.value = JSON.stringify(schema.default, null, 2);
    read = () => {
      if (input.value.trim() === '') return { present: false };
      try {
        return { present: true, value: JSON.parse(input.value) };
      } catch {
        return { problem: 'Not valid JSON.' };
      }
    };
  }

  const label = h('label', { for: id }, labelText);
  const hint = h('p', { class: 'hint', id: hintId }, describe(schema, type, required));
  const error = h('p', { class: 'field-error', id: errorId, hidden: true });
  const el =
    type === 'boolean'
      ? h('div', { class: 'field field-check' }, input, label, hint, error)
      : h('div', { class: 'field' }, label, input, hint, error);

  return {
    el,
    input,
    name,
    read,
    setError(messages) {
      const text = Array.isArray(messages) ? messages.join(' ') : messages ? String(messages) : '';
      error.textContent = text;
      error.hidden = !text;
      if (text) {
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', `${errorId} ${hintId}`);
      } else {
        input.removeAttribute('aria-invalid');
        input.setAttribute('aria-describedby', hintId);
      }
    },
  };
}

// The fields of an object schema, in its order, required ones first.
export function objectFields(schema, prefix) {
  const properties = schema?.properties || {};
  const required = new Set(schema?.required || []);
  const names = Object.keys(properties);
  names.sort((a, b) => Number(required.has(b)) - Number(required.has(a)));
  return names.map((name) => schemaField(name, properties[name], { required: required.has(name), prefix }));
}

// {value, problems}: the object the fields hold, and client-side problems by name.
export function collect(fields) {
  const value = {};
  const problems = {};
  for (const field of fields) {
    const got = field.read();
    if (got.problem) problems[field.name] = [got.problem];
    else if (got.present) value[field.name] = got.value;
  }
  return { value, problems };
}
