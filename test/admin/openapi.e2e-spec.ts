import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { createTestApp, TestApp } from '../harness/app';
import { createTenantWithAdmin, masterHeaders, masterIn } from '../harness/factories';

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: {
    securitySchemes: Record<string, { type: string; scheme?: string; in?: string; name?: string }>;
    schemas?: Record<string, { properties?: Record<string, { example?: unknown; default?: unknown }> }>;
  };
};
type Operation = {
  summary?: string;
  responses: Record<string, { description?: string; content?: Record<string, { schema?: unknown }> }>;
  requestBody?: {
    content: Record<
      string,
      { schema?: SchemaObject; example?: unknown; examples?: Record<string, { value: unknown }> }
    >;
  };
  security?: Record<string, string[]>[];
  parameters?: { in: string; name: string }[];
};

/**
 * @apidevtools/swagger-parser in a plain Node process: its json-schema-ref-parser is ESM-only,
 * which Jest on Node 20 cannot require (Node >= 20.19 can).
 */
function validateOpenApi(doc: unknown): { ok: boolean; message: string } {
  const script = `
    const SwaggerParser = require('@apidevtools/swagger-parser');
    let input = '';
    process.stdin.on('data', (c) => (input += c)).on('end', () => {
      SwaggerParser.validate(JSON.parse(input))
        .then((api) => process.stdout.write('valid ' + api.openapi))
        .catch((e) => { process.stdout.write(e.message); process.exitCode = 1; });
    });`;
  const r = spawnSync(process.execPath, ['-e', script], {
    input: JSON.stringify(doc),
    encoding: 'utf8',
    cwd: __dirname,
    timeout: 60000,
  });
  return { ok: r.status === 0, message: `${r.stdout}${r.stderr}` };
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

type SchemaObject = {
  $ref?: string;
  type?: string;
  format?: string;
  example?: unknown;
  default?: unknown;
  enum?: unknown[];
  properties?: Record<string, SchemaObject>;
  items?: SchemaObject;
  allOf?: SchemaObject[];
  oneOf?: SchemaObject[];
  anyOf?: SchemaObject[];
};

/**
 * What Swagger UI's "Try it out" posts for a request body: the media type's `example` (or
 * first of `examples`), else a value sampled from the schema as swagger-ui does (a property's
 * example, else its default, else its first enum value, else a placeholder by type:
 * "string", a fixed uuid, 0, true).
 */
function swaggerUiExample(
  doc: Doc,
  media: NonNullable<Operation['requestBody']>['content'][string],
): unknown {
  if (media.example !== undefined) return media.example;
  if (media.examples) return Object.values(media.examples)[0]?.value;
  const sample = (schema: SchemaObject | undefined, depth = 0): unknown => {
    if (!schema || depth > 8) return undefined;
    if (schema.$ref)
      return sample(doc.components.schemas?.[schema.$ref.split('/').pop()!] as SchemaObject, depth + 1);
    if (schema.example !== undefined) return schema.example;
    if (schema.default !== undefined) return schema.default;
    if (schema.enum?.length) return schema.enum[0];
    if (schema.allOf) return Object.assign({}, ...schema.allOf.map((x) => sample(x, depth + 1) as object));
    if (schema.oneOf ?? schema.anyOf) return sample((schema.oneOf ?? schema.anyOf)![0], depth + 1);
    if (schema.type === 'array') return [sample(schema.items, depth + 1)];
    if (schema.type === 'object' || schema.properties)
      return Object.fromEntries(
        Object.entries(schema.properties ?? {}).map(([k, v]) => [k, sample(v, depth + 1)]),
      );
    if (schema.type === 'string')
      return schema.format === 'uuid'
        ? '3fa85f64-5717-4562-b3fc-2c963f66afa6'
        : schema.format === 'date-time'
          ? new Date().toISOString()
          : 'string';
    if (schema.type === 'number' || schema.type === 'integer') return 0;
    if (schema.type === 'boolean') return true;
    return undefined;
  };
  return sample(media.schema);
}

/**
 * Not API routes, so not in the document: the admin page's static files (HTML/JS/CSS,
 * `@ApiExcludeController`), and Swagger's own /docs, /docs-json, /docs-yaml.
 */
const NOT_API = [/^\/admin(\/|$)/, /^\/docs(-json|-yaml)?(\/|$)/];

/** Every METHOD /path the Express router holds (what Nest registered), Express `:id` turned into `{id}`. */
function registeredRoutes(t: TestApp): string[] {
  const router = (t.app.getHttpAdapter().getInstance() as { router: { stack: unknown[] } }).router;
  const out = new Set<string>();
  for (const layer of router.stack as {
    route?: { path: string | string[]; methods: Record<string, boolean> };
  }[]) {
    if (!layer.route) continue;
    // An `all()` layer (every HTTP method) is middleware bound with forRoutes, such as
    // nestjs-pino's `{/*splat}`, not an operation: Nest's controllers register one method each.
    if (Object.keys(layer.route.methods).length > 20) continue;
    for (const path of ([] as string[]).concat(layer.route.path)) {
      for (const [m, on] of Object.entries(layer.route.methods)) {
        if (on && m !== '_all') out.add(`${m.toUpperCase()} ${path.replace(/:(\w+)/g, '{$1}')}`);
      }
    }
  }
  return [...out].sort();
}

function documented(doc: Doc): string[] {
  const out: string[] = [];
  for (const [path, item] of Object.entries(doc.paths))
    for (const m of METHODS) if (item[m]) out.push(`${m.toUpperCase()} ${path}`);
  return out.sort();
}

function operations(doc: Doc): [string, Operation][] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((m) => [`${m.toUpperCase()} ${path}`, item[m]] as [string, Operation]),
  );
}

describe('OpenAPI document at /docs-json', () => {
  let t: TestApp;
  let doc: Doc;

  beforeAll(async () => {
    // The first start's admin with the login example's password: that example posted as is works.
    t = await createTestApp({ env: { BOOTSTRAP_ADMIN: 'true', ADMIN_PASSWORD: 'your-password' } });
    doc = (await request(t.url).get('/docs-json').expect(200)).body as Doc;
    // OPENAPI_OUT=file.json keeps a copy to read (or diff) after the run.
    if (process.env.OPENAPI_OUT) writeFileSync(process.env.OPENAPI_OUT, JSON.stringify(doc, null, 2));
  });
  afterAll(() => t.close());

  it('is a valid OpenAPI 3 document (swagger-parser validate, $refs resolved)', () => {
    expect(doc.openapi).toMatch(/^3\./);
    const result = validateOpenApi(doc);
    expect(result.message).toMatch(/^valid 3\./);
    expect(result.ok).toBe(true);
  });

  it('Swagger UI is served at /docs from local assets', async () => {
    const res = await request(t.url).get('/docs/').redirects(1).expect(200);
    expect(res.text).toContain('swagger-ui');
    expect(res.text).not.toMatch(/(src|href)="https?:\/\//);
  });

  it('declares both security schemes: bearer (JWT or master key) and X-API-Key', () => {
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.securitySchemes['api-key']).toMatchObject({
      type: 'apiKey',
      in: 'header',
      name: 'X-API-Key',
    });
  });

  it('covers every route the app registers (and documents none that does not exist)', () => {
    const registered = registeredRoutes(t).filter((r) => !NOT_API.some((re) => re.test(r.split(' ')[1])));
    expect(registered.length).toBeGreaterThan(10);
    expect(registered.filter((r) => !documented(doc).includes(r))).toEqual([]);
    expect(documented(doc).filter((r) => !registered.includes(r))).toEqual([]);
  });

  it('every operation: a success schema, the error responses that apply (with the error body), security unless public', () => {
    const problems: string[] = [];
    const PUBLIC = [/^POST \/auth\/login$/, /^GET \/health/, /^GET \/metrics$/];
    for (const [name, op] of operations(doc)) {
      const [method, path] = name.split(' ');
      const codes = Object.keys(op.responses);
      const need = (code: string, why: string) => {
        if (!codes.includes(code)) problems.push(`${name}: no ${code} (${why})`);
      };
      const ok = codes.filter((c) => /^2/.test(c));
      if (!ok.length) problems.push(`${name}: no 2xx response`);
      for (const c of ok) {
        const content = op.responses[c].content ?? {};
        if (c !== '204' && !Object.values(content).some((m) => m.schema))
          problems.push(`${name}: ${c} without a schema`);
      }
      // Liveness answers 200 or nothing at all (the process is down).
      if (!codes.some((c) => /^[45]/.test(c)) && name !== 'GET /health/live')
        problems.push(`${name}: no error response`);
      // Readiness' 503 is terminus' report plus the error envelope (its own schema, from @HealthCheck).
      const ownErrorSchema = /^GET \/health/.test(name);
      for (const c of codes.filter((x) => /^[45]/.test(x))) {
        const json = op.responses[c].content?.['application/json'] as
          { schema?: { $ref?: string }; example?: unknown } | undefined;
        if (!json?.schema) problems.push(`${name}: ${c} without a schema`);
        else if (
          !ownErrorSchema &&
          (json.schema.$ref !== '#/components/schemas/ErrorResponse' || !json.example)
        )
          problems.push(`${name}: ${c} without the error body schema and an example`);
      }
      const keyRoute = op.security?.some((s) => 'api-key' in s);
      const adminRoute = !keyRoute && op.security?.some((s) => 'bearer' in s);
      if (!PUBLIC.some((re) => re.test(name))) {
        if (!op.security?.length) problems.push(`${name}: no security requirement`);
        need('401', 'credentials');
      }
      if (keyRoute) need('429', 'failed-attempt limit');
      if (adminRoute) {
        need('403', 'roles');
        need('400', 'validation, X-Tenant-ID');
        // (POST /auth/logout-all acts on the calling user only: no tenant to name)
        const tenantScoped = !path.startsWith('/api/v1/tenants') && path !== '/auth/logout-all';
        if (tenantScoped && !op.parameters?.some((p) => p.in === 'header' && p.name === 'X-Tenant-ID'))
          problems.push(`${name}: X-Tenant-ID header (master key) not documented`);
      }
      if (path.includes('{')) need('404', 'path parameter');
      if (op.requestBody) {
        need('400', 'validation');
        const media = op.requestBody.content['application/json'] as
          { schema?: { $ref?: string } } | undefined;
        if (!media?.schema) problems.push(`${name}: request body without a JSON schema`);
        const ref = media?.schema?.$ref?.split('/').pop();
        const schema = ref ? doc.components.schemas?.[ref] : undefined;
        const props = Object.values(schema?.properties ?? {});
        if (ref && !props.some((p) => p.example !== undefined || p.default !== undefined))
          problems.push(`${name}: request body ${ref} has no example`);
      } else if (
        ['POST', 'PATCH', 'PUT'].includes(method) &&
        !/(\/responses\/\{id\}\/cancel|\/logout-all)$/.test(path)
      ) {
        // (POST /v1/responses/{id}/cancel takes no body, as OpenAI's; nor do the logout-all actions)
        problems.push(`${name}: no request body`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('every operation has a summary', () => {
    const without = operations(doc)
      .filter(([, op]) => !op.summary?.trim())
      .map(([name]) => name);
    expect(without).toEqual([]);
  });

  it('every request body example, posted as it is (Swagger UI "Try it out"), succeeds', async () => {
    const { tenantId } = await createTenantWithAdmin(t.url);
    const key = await request(t.url)
      .post('/api/v1/api-keys')
      .set(masterIn(tenantId))
      .send({ name: 'examples' })
      .expect(201);
    // Collection creates first: their answers' ids fill the {id} of the routes below them.
    const withBody = operations(doc).filter(([, op]) => op.requestBody);
    withBody.sort(([a], [b]) => Number(a.includes('{')) - Number(b.includes('{')));
    const created: Record<string, string> = {};
    const failures: string[] = [];
    let createKey: { status: number; sent: unknown } | undefined;
    for (const [name, op] of withBody) {
      const [method, path] = name.split(' ');
      const body = swaggerUiExample(doc, op.requestBody!.content['application/json']);
      const collection = path.replace(/\/\{id\}.*$/, '');
      const url = path.replace('{id}', created[collection] ?? key.body.id);
      let req = request(t.url)[method.toLowerCase() as 'post' | 'patch'](url);
      if (op.security?.some((s) => 'api-key' in s)) req = req.set('Authorization', `Bearer ${key.body.key}`);
      else if (path.startsWith('/api/v1/tenants')) req = req.set(masterHeaders);
      else if (op.security?.length) req = req.set(masterIn(tenantId));
      const res = await req.send(body as object);
      if (method === 'POST' && !path.includes('{') && res.body?.id) created[path] ??= res.body.id as string;
      if (name === 'POST /api/v1/api-keys') createKey = { status: res.status, sent: body };
      if (!(res.status >= 200 && res.status < 300))
        failures.push(
          `${name} ${JSON.stringify(body)} -> ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`,
        );
    }
    expect(failures).toEqual([]);
    // The case: Swagger posted "key": "string" and got 400.
    expect(createKey).toEqual({ status: 201, sent: expect.not.objectContaining({ key: expect.anything() }) });
    expect(withBody.length).toBeGreaterThan(15);
  });

  it("README's route table and the document agree (GET /metrics included, as text/plain under health)", () => {
    const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('\n## Routes\n'), readme.indexOf('\n## Virtual API keys'));
    const listed: string[] = [];
    for (const row of table.split('\n').filter((l) => l.startsWith('| `'))) {
      let methods: string[] = [];
      for (const [, span] of row.split('|')[1].matchAll(/`([^`]+)`/g)) {
        const m = /^(?:([A-Z/]+) )?(\/\S*)$/.exec(span);
        if (!m || m[2].includes('...')) continue;
        if (m[1]) methods = m[1].split('/');
        for (const method of methods) listed.push(`${method} ${m[2].replace(/:(\w+)/g, '{$1}')}`);
      }
    }
    expect(listed).toEqual(
      expect.arrayContaining(['GET /metrics', 'POST /api/v1/api-keys', 'GET /health/ready']),
    );
    const notInDoc = listed.filter(
      (r) => !NOT_API.some((re) => re.test(r.split(' ')[1])) && !documented(doc).includes(r),
    );
    expect(notInDoc).toEqual([]);
    expect(doc.paths['/metrics'].get.responses['200'].content).toHaveProperty('text/plain');
    expect((doc.paths['/metrics'].get as { tags?: string[] }).tags).toEqual(['health']);
    expect(readme).toContain('in the OpenAPI document under `health`, as `text/plain`');
  });
});
