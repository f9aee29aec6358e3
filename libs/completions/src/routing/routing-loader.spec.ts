import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@app/config';
import { loadRoutingTable, parseRoutingTable } from './routing-loader';
import { deploymentsFor, endpointsOf, isModelAllowed } from './routing-table';

const secrets: Record<string, string> = { OPENAI_KEY: 'sk-upstream-secret', ANTHROPIC_KEY: 'sk-ant-secret' };
const read = (name: string) => secrets[name];

const valid = {
  models: {
    'gpt-4o-mini': {
      aliases: ['small'],
      deployments: [
        {
          provider: 'openai',
          model: 'gpt-4o-mini',
          base_url: 'https://api.openai.com/v1/',
          api_key_env: 'OPENAI_KEY',
          pricing: { input_per_million: 0.15, output_per_million: 0.6 },
        },
        {
          provider: 'openai',
          model: 'qwen',
          base_url: 'http://127.0.0.1:8000/v1',
          pricing: { input_per_million: 0, output_per_million: 0 },
          max_connections: 8,
        },
      ],
    },
    claude: {
      deployments: [
        {
          provider: 'anthropic',
          model: 'claude-sonnet-4-0',
          api_key_env: 'ANTHROPIC_KEY',
          pricing: { input_per_million: 3, output_per_million: 15 },
        },
      ],
    },
    dev: { deployments: [{ provider: 'mock', options: { latency_ms: 5, completion_tokens: 7 } }] },
  },
};

const clone = () => JSON.parse(JSON.stringify(valid));
const problem = (doc: unknown) => {
  try {
    parseRoutingTable(doc, 'models.json', read);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('routing table', () => {
  it('parses models, aliases, deployments, defaults and credentials', () => {
    const t = parseRoutingTable(valid, 'models.json', read);
    const r = t.resolve('small')!;
    expect(r.name).toBe('gpt-4o-mini');
    expect(t.resolve('gpt-4o-mini')).toBe(r);
    expect(r.deployments.map((d) => d.id)).toEqual(['gpt-4o-mini#0', 'gpt-4o-mini#1']);
    expect(r.deployments[0].baseUrl).toBe('https://api.openai.com/v1');
    expect(r.deployments[0].apiKey).toBe('sk-upstream-secret');
    expect(r.deployments[1].apiKey).toBeUndefined();
    expect(r.deployments[1].maxConnections).toBe(8);
    expect(r.maxPricing).toEqual({ inputPerMillion: 0.15, outputPerMillion: 0.6 });
    const claude = t.resolve('claude')!.deployments[0];
    expect(claude.baseUrl).toBe('https://api.anthropic.com');
    expect(claude.anthropic).toEqual({ version: '2023-06-01' });
    const dev = t.resolve('dev')!.deployments[0];
    expect(dev.model).toBe('dev');
    expect(dev.mock).toMatchObject({ latencyMs: 5, chunkDelayMs: 0, completionTokens: 7 });
    expect(t.resolve('nope')).toBeUndefined();
    expect(t.names().map((n) => n.name)).toEqual(['gpt-4o-mini', 'small', 'claude', 'dev']);
  });

  it('endpoints: what the provider serves unless narrowed; embedding_per_million optional', () => {
    const d = clone();
    d.models['gpt-4o-mini'].deployments[1].endpoints = ['chat'];
    d.models['gpt-4o-mini'].deployments[0].pricing.embedding_per_million = 0.02;
    const t = parseRoutingTable(d, 'models.json', read);
    const r = t.resolve('gpt-4o-mini')!;
    expect(r.deployments[0].endpoints).toEqual(['chat', 'embeddings', 'responses']);
    expect(r.deployments[1].endpoints).toEqual(['chat']);
    expect(r.deployments[0].pricing.embeddingPerMillion).toBe(0.02);
    expect(deploymentsFor(r, 'embeddings').map((x) => x.model)).toEqual(['gpt-4o-mini']);
    expect(endpointsOf(t.resolve('claude')!)).toEqual(['chat']);
    expect(endpointsOf(t.resolve('dev')!)).toEqual(['chat', 'embeddings', 'responses']);
  });

  it('never serialises a credential', () => {
    const t = parseRoutingTable(valid, 'models.json', read);
    expect(JSON.stringify(t.routes)).not.toContain('secret');
    expect(Object.keys(t.resolve('claude')!.deployments[0])).not.toContain('apiKey');
  });

  it.each<[string, (d: any) => void, RegExp]>([
    [
      'unknown top-level field',
      (d) => (d.routes = {}),
      /^MODELS_FILE models\.json: the document\.routes is not a known field/,
    ],
    ['no models', (d) => (d.models = {}), /models must name at least one model/],
    [
      'bad provider',
      (d) => (d.models.dev.deployments[0].provider = 'azure'),
      /deployments\[0\]\.provider must be one of openai, anthropic, mock$/,
    ],
    [
      'missing base_url',
      (d) => delete d.models['gpt-4o-mini'].deployments[0].base_url,
      /\["gpt-4o-mini"\]\.deployments\[0\]\.base_url must be a non-empty string/,
    ],
    [
      'bad base_url',
      (d) => (d.models['gpt-4o-mini'].deployments[0].base_url = 'ftp://x'),
      /base_url must be an http/,
    ],
    [
      'missing pricing',
      (d) => delete d.models.claude.deployments[0].pricing,
      /\["claude"\]\.deployments\[0\]\.pricing must be an object/,
    ],
    [
      'negative price',
      (d) => (d.models.claude.deployments[0].pricing.input_per_million = -1),
      /input_per_million must be a number >= 0/,
    ],
    [
      'a secret instead of a name',
      (d) => (d.models.claude.deployments[0].api_key_env = 'sk-ant-abc123'),
      /must be the NAME of an environment variable/,
    ],
    [
      'unset credential',
      (d) => (d.models.claude.deployments[0].api_key_env = 'NOT_SET'),
      /names NOT_SET, which is not set/,
    ],
    [
      'duplicate alias',
      (d) => (d.models.claude.aliases = ['small']),
      /"small" is already used by model "gpt-4o-mini"/,
    ],
    [
      'typo in a field',
      (d) => (d.models.claude.deployments[0].baseurl = 'x'),
      /deployments\[0\]\.baseurl is not a known field/,
    ],
    [
      'bad mock option',
      (d) => (d.models.dev.deployments[0].options.latency_ms = -5),
      /options\.latency_ms must be an integer >= 0/,
    ],
    [
      'options on openai',
      (d) => (d.models['gpt-4o-mini'].deployments[0].options = { x: 1 }),
      /options\.x is not a known field$/,
    ],
    ['empty deployments', (d) => (d.models.claude.deployments = []), /deployments must be a non-empty array/],
    [
      'an endpoint the provider cannot serve',
      (d) => (d.models.claude.deployments[0].endpoints = ['chat', 'embeddings']),
      /\["claude"\]\.deployments\[0\]\.endpoints\[1\] must be one of chat \(what the anthropic provider serves\)/,
    ],
    [
      'empty endpoints',
      (d) => (d.models.claude.deployments[0].endpoints = []),
      /endpoints must be a non-empty array/,
    ],
    [
      'negative embedding price',
      (d) => (d.models.claude.deployments[0].pricing.embedding_per_million = -1),
      /embedding_per_million must be a number >= 0/,
    ],
  ])('%s: one clear line', (_name, mutate, message) => {
    const d = clone();
    mutate(d);
    const m = problem(d);
    expect(m).toMatch(message);
    expect(m).not.toContain('\n');
    expect(m).not.toContain('sk-ant-abc123'.slice(7));
  });

  it('reads MODELS_FILE; names an unreadable or malformed file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-models-'));
    const file = join(dir, 'models.json');
    writeFileSync(file, JSON.stringify(valid));
    expect(loadRoutingTable(file, read).resolve('small')).toBeDefined();
    writeFileSync(file, '{"models": ');
    expect(() => loadRoutingTable(file, read)).toThrow(/^MODELS_FILE .*models\.json: not valid JSON/);
    expect(() => loadRoutingTable(join(dir, 'missing.json'), read)).toThrow(/cannot read it \(ENOENT\)/);
  });

  it('defaults to the built-in mock models, the shipped example parses', () => {
    const t = loadRoutingTable(undefined, read);
    expect(t.resolve('gpt-4o-mini')?.deployments[0].provider).toBe('mock');
    expect(t.resolve('mock-gpt')).toBeDefined();
    const example = loadRoutingTable(join(__dirname, '../../../../config/models.example.json'), () => 'x');
    expect(example.routes.length).toBeGreaterThan(0);
  });

  it('routing fields: strategy, weight, timeouts; defaults; bad values named', () => {
    const parse = (doc: unknown) => parseRoutingTable(doc, 'models.json', read);
    const mock = (extra: object = {}) => ({ provider: 'mock', ...extra });
    const t = parse({
      models: {
        a: {
          strategy: 'weighted',
          deployments: [
            mock({
              weight: 3,
              timeouts: { connect_ms: 100, stream_first_byte_ms: 200, stream_idle_ms: 300, total_ms: 400 },
            }),
            mock({ weight: 0 }),
          ],
        },
        b: { deployments: [mock()] },
      },
    });
    const a = t.resolve('a')!;
    expect(a.strategy).toBe('weighted');
    expect(a.deployments.map((d) => d.routing.weight)).toEqual([3, 0]);
    expect(a.deployments[0].routing.timeouts).toEqual({
      connectMs: 100,
      firstByteMs: 200,
      idleMs: 300,
      totalMs: 400,
    });
    expect(t.resolve('b')!.strategy).toBe('order');
    expect(t.resolve('b')!.deployments[0].routing).toEqual({ weight: 1, timeouts: {} });
    expect(() => parse({ models: { a: { strategy: 'random', deployments: [mock()] } } })).toThrow(
      /^MODELS_FILE models\.json: models\["a"\]\.strategy must be one of order, weighted, least-busy$/,
    );
    expect(() => parse({ models: { a: { deployments: [mock({ weight: -1 })] } } })).toThrow(
      /deployments\[0\]\.weight must be a number >= 0/,
    );
    expect(() =>
      parse({ models: { a: { deployments: [mock({ timeouts: { first_byte_ms: 5 } })] } } }),
    ).toThrow(/deployments\[0\]\.timeouts\.first_byte_ms is not a known field/);
    expect(() => parse({ models: { a: { deployments: [mock({ timeouts: { total_ms: 0 } })] } } })).toThrow(
      /timeouts\.total_ms must be an integer >= 1/,
    );
    expect(() =>
      parse({ models: { a: { strategy: 'weighted', deployments: [mock({ weight: 0 })] } } }),
    ).toThrow(/weight above 0/);
  });

  it('allowed models: null = all; else the exact name (an alias is a name of its own)', () => {
    expect(isModelAllowed(null, 'small')).toBe(true);
    expect(isModelAllowed(['small'], 'small')).toBe(true);
    expect(isModelAllowed(['gpt-4o-mini'], 'small')).toBe(false);
    expect(isModelAllowed([], 'small')).toBe(false);
  });
});
