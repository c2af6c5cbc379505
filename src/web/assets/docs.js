// The API reference: this service's OpenAPI document, fetched as JSON and drawn as a page. The
// server-rendered list of endpoints stays in place until the document has arrived.

import { h, inlineProse, jsonView, prose } from './render.js';

const root = document.getElementById('reference');
const METHODS = ['get', 'put', 'post', 'patch', 'delete'];

load();

async function load() {
  try {
    const response = await fetch(root.dataset.document, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    render(await response.json());
  } catch (error) {
    root.querySelector('[data-loading]').textContent = `The document could not be loaded (${error.message}); here are the endpoints.`;
  }
}

function render(document_) {
  const resolve = (node) => {
    let seen = 0;
    while (node?.$ref && seen++ < 8) {
      node = node.$ref.slice(2).split('/').reduce((at, key) => at?.[key.replaceAll('~1', '/').replaceAll('~0', '~')], document_);
    }
    return node ?? {};
  };
  const refName = (node) => node?.$ref?.split('/').pop();

  /** `string (email)`, `array of string`, `Tokens`, `FieldErrors | Detail`… */
  const typeOf = (schema) => {
    if (!schema) return 'any';
    if (schema.$ref) return h('a', { href: `#schema-${refName(schema)}` }, refName(schema));
    if (schema.oneOf) return joinNodes(schema.oneOf.map(typeOf), ' | ');
    const type = [schema.type ?? 'any'].flat().join(' | ');
    if (type === 'array') return joinNodes(['array of ', typeOf(schema.items)]);
    if (type === 'object' && schema.additionalProperties) {
      return joinNodes(['object: any key → ', typeOf(schema.additionalProperties)]);
    }
    return schema.format ? `${type} (${schema.format})` : type;
  };

  const characters = (count) => `${count} character${count === 1 ? '' : 's'}`;
  const constraints = (schema) => [
    schema.minLength !== undefined && `at least ${characters(schema.minLength)}`,
    schema.maxLength !== undefined && `at most ${characters(schema.maxLength)}`,
  ].filter(Boolean).join(', ');

  /** An object's fields as a table; anything else as its type. */
  const schemaView = (schema, { named = true } = {}) => {
    const target = resolve(schema);
    const properties = Object.entries(target.properties ?? {});
    const intro = named && schema?.$ref ? h('p', { class: 'schema-name' }, typeOf(schema), target.description ? [' — ', inlineProse(target.description)] : null) : null;
    if (properties.length === 0) return h('div', {}, intro, h('p', {}, 'Type: ', h('code', {}, typeOf(target))));
    const required = new Set(target.required ?? []);
    return h('div', {}, intro, h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Type'), h('th', { scope: 'col' }, 'Description'))),
      h('tbody', {}, properties.map(([name, property]) => h('tr', {},
        h('th', { scope: 'row' }, h('code', {}, name), required.has(name) ? h('span', { class: 'required' }, 'required') : null),
        h('td', {}, typeOf(property)),
        h('td', {}, ...prose(resolve(property).description ?? ''), constraints(property) ? h('p', { class: 'hint' }, constraints(property)) : null),
      ))),
    )));
  };

  const exampleOf = (content) => content.example ?? Object.values(content.examples ?? {})[0]?.value ?? resolve(content.schema).example;

  const mediaView = (content) => Object.entries(content ?? {}).map(([mediaType, media], index) => h('div', { class: 'media' },
    h('p', { class: 'media-type' }, h('code', {}, mediaType)),
    // The same body in another media type (a form) needs no second table.
    index === 0 && media.schema ? schemaView(media.schema) : null,
    index === 0 && exampleOf(media) !== undefined ? h('details', { class: 'example' }, h('summary', {}, 'Example'), jsonView(exampleOf(media))) : null,
  ));

  const sharedStatus = new Map();

  /** An answer: its status and description; its headers, body and example on demand. */
  const responseView = (status, response, { open = false } = {}) => {
    const headers = Object.entries(response.headers ?? {});
    return h('details', { class: 'response-doc', open },
      h('summary', {}, status ? h('span', { class: `status-badge status-${status[0]}xx` }, status) : null, ' ', inlineProse(response.description)),
      headers.map(([name, header]) => h('p', { class: 'hint' }, 'Header ', h('code', {}, name), header.description ? [': ', inlineProse(header.description)] : null)),
      mediaView(response.content),
    );
  };

  /** Its own answers in full; the shared ones (405, 503…) as links to where they are described once. */
  const responsesView = (responses) => {
    const entries = Object.entries(responses ?? {});
    const own = entries.filter(([, response]) => !response.$ref);
    const shared = entries.filter(([, response]) => response.$ref);
    for (const [status, response] of shared) sharedStatus.set(refName(response), status);
    return [
      own.map(([status, response], index) => responseView(status, response, { open: index === 0 })),
      shared.length ? h('p', { class: 'hint' }, 'And, as every endpoint it applies to: ',
        joinNodes(shared.map(([status, response]) => h('a', { href: `#response-${refName(response)}` }, `${status} ${refName(response)}`)), ', ')) : null,
    ];
  };

  const operationView = (path, method, operation) => {
    const browsable = path.startsWith('/api/') && Object.entries(operation.responses ?? {})
      .some(([status, response]) => status.startsWith('2') && resolve(response).content?.['application/json']);
    return h('article', { class: 'card operation-doc', id: `op-${operation.operationId ?? `${method}-${path}`}` },
      h('h3', {}, h('span', { class: `method method-${method}` }, method.toUpperCase()), ' ', h('code', {}, path), ' ', h('span', { class: 'op-summary' }, operation.summary ?? '')),
      ...prose(operation.description),
      operation.security?.length ? h('p', { class: 'auth' }, 'Needs ', h('code', {}, 'Authorization: Bearer <access_token>'), '.') : null,
      browsable ? h('p', {}, h('a', { href: path }, `Try it on its page →`)) : null,
      (operation.parameters ?? []).length ? h('div', {}, h('h4', {}, 'Parameters'), h('ul', {}, operation.parameters.map((parameter) => h('li', {}, h('code', {}, parameter.name), ` (${parameter.in}) — ${parameter.description ?? ''}`)))) : null,
      operation.requestBody ? h('div', {}, h('h4', {}, 'Request body'), mediaView(resolve(operation.requestBody).content)) : null,
      h('h4', {}, 'Responses'),
      responsesView(operation.responses),
    );
  };

  const byTag = new Map((document_.tags ?? []).map((tag) => [tag.name, { ...tag, operations: [] }]));
  for (const [path, item] of Object.entries(document_.paths ?? {})) {
    for (const method of METHODS.filter((m) => item[m])) {
      const tag = item[method].tags?.[0] ?? 'other';
      if (!byTag.has(tag)) byTag.set(tag, { name: tag, operations: [] });
      byTag.get(tag).operations.push(operationView(path, method, item[method]));
    }
  }
  const tags = [...byTag.values()].filter((tag) => tag.operations.length);
  const schemas = Object.entries(document_.components?.schemas ?? {});

  root.replaceChildren(...[
    h('section', { class: 'card intro' },
      h('p', { class: 'eyebrow' }, `OpenAPI ${document_.openapi} · version ${document_.info?.version ?? ''}`),
      ...prose(document_.info?.description),
      h('nav', { 'aria-label': 'Contents', class: 'toc' }, h('ul', {},
        tags.map((tag) => h('li', {}, h('a', { href: `#tag-${tag.name}` }, tag.name))),
        h('li', {}, h('a', { href: '#general-answers' }, 'general answers')),
        h('li', {}, h('a', { href: '#schemas' }, 'schemas')),
      )),
    ),
    tags.map((tag) => h('section', { id: `tag-${tag.name}`, class: 'tag' },
      h('h2', {}, tag.name), ...prose(tag.description), tag.operations)),
    h('section', { id: 'general-answers', class: 'tag' }, h('h2', {}, 'general answers'),
      h('p', {}, 'Answers that any endpoint may give where the rule applies.'),
      Object.entries(document_.components?.responses ?? {}).map(([name, response]) => h('article', { class: 'card', id: `response-${name}` },
        h('h3', {}, h('code', {}, name)), responseView(sharedStatus.get(name) ?? '', response)))),
    h('section', { id: 'schemas', class: 'tag' }, h('h2', {}, 'schemas'),
      schemas.map(([name, schema]) => h('article', { class: 'card', id: `schema-${name}` },
        h('h3', {}, h('code', {}, name)), ...prose(schema.description), schemaView(schema, { named: false })))),
    h('details', { class: 'card raw-document' }, h('summary', {}, 'The whole document as JSON'), jsonView(document_)),
  ].flat());
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

function joinNodes(nodes, separator = '') {
  const fragment = document.createDocumentFragment();
  nodes.forEach((node, index) => fragment.append(...(index && separator ? [separator] : []), node));
  return fragment;
}
