import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, MAX_COMPLETION_TOKENS } from '@app/config';
import type { Pricing } from '../pricing';
import {
  AnthropicOptions,
  Deployment,
  Endpoint,
  MockOptions,
  ModelRoute,
  PROVIDER_ENDPOINTS,
  PROVIDER_KINDS,
  ProviderKind,
  RoutingTable,
  Strategy,
  STRATEGIES,
  TimeoutOverrides,
} from './routing-table';

/** Reads the secret a routing table names (`api_key_env`); tests pass their own. */
export type SecretReader = (name: string) => string | undefined;

/**
 * The one read of `process.env` outside libs/config: the routing table names the variable
 * holding each provider credential, so the set of variables is only known here.
 */
export const secretFromEnv: SecretReader = (name) => process.env[name] || undefined;

/**
 * Offline defaults (no MODELS_FILE): mock models under common names, priced like
 * gpt-4o-mini so budgets and the ledger show real figures in a demo.
 */
export const BUILT_IN_MODELS = {
  models: {
    'mock-gpt': {
      aliases: ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1-mini', 'gpt-3.5-turbo'],
      deployments: [{ provider: 'mock', pricing: { input_per_million: 0.15, output_per_million: 0.6 } }],
    },
    'mock-claude': {
      aliases: ['claude-3-5-haiku-latest', 'claude-sonnet-4-0'],
      deployments: [{ provider: 'mock', pricing: { input_per_million: 0.8, output_per_million: 4 } }],
    },
    'mock-embedding': {
      aliases: ['text-embedding-3-small'],
      deployments: [
        {
          provider: 'mock',
          endpoints: ['embeddings'],
          pricing: { input_per_million: 0.02, output_per_million: 0 },
        },
      ],
    },
    'mock-slow': {
      aliases: [],
      deployments: [
        {
          provider: 'mock',
          pricing: { input_per_million: 0.15, output_per_million: 0.6 },
          options: { latency_ms: 300, chunk_delay_ms: 50 },
        },
      ],
    },
  },
};

/** MODELS_FILE, or the built-in mock models when unset. Throws ConfigError (one line). */
export function loadRoutingTable(
  file: string | undefined,
  readSecret: SecretReader = secretFromEnv,
): RoutingTable {
  if (!file) return parseRoutingTable(BUILT_IN_MODELS, 'built-in mock models', readSecret);
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `MODELS_FILE ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`MODELS_FILE ${file}: not valid JSON (${(e as Error).message})`);
  }
  return parseRoutingTable(json, file, readSecret);
}

const MODEL_NAME = /^[\w.:/@-]{1,128}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ANTHROPIC_BASE = 'https://api.anthropic.com';
/**
 * Connections per deployment and instance: sized for LLM answers that stream for seconds to
 * minutes on one HTTP/1.1 connection each (64 queued the 65th stream silently, issue 18).
 */
const DEFAULT_MAX_CONNECTIONS = 1024;

/** Validates a routing table document (format: docs/models.md). */
export function parseRoutingTable(doc: unknown, source: string, readSecret: SecretReader): RoutingTable {
  const fail = (where: string, problem: string): never => {
    throw new ConfigError(`MODELS_FILE ${source}: ${where} ${problem}`);
  };
  const obj = (v: unknown, where: string): Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : fail(where, 'must be an object');
  const onlyKeys = (o: Record<string, unknown>, where: string, keys: string[]) => {
    const extra = Object.keys(o).find((k) => !keys.includes(k));
    if (extra)
      fail(
        `${where}.${extra}`,
        keys.length ? `is not a known field (expected one of: ${keys.join(', ')})` : 'is not a known field',
      );
  };
  const str = (v: unknown, where: string): string =>
    typeof v === 'string' && v.length > 0 ? v : fail(where, 'must be a non-empty string');
  const num = (v: unknown, where: string): number =>
    typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : fail(where, 'must be a number >= 0');
  const int = (v: unknown, where: string, min: number): number =>
    Number.isInteger(v) && (v as number) >= min ? (v as number) : fail(where, `must be an integer >= ${min}`);

  const root = obj(doc, 'the document');
  onlyKeys(root, 'the document', ['models']);
  const models = obj(root.models, 'models');
  if (Object.keys(models).length === 0) fail('models', 'must name at least one model');

  const seen = new Map<string, string>();
  const claim = (name: string, where: string, owner: string) => {
    if (!MODEL_NAME.test(name))
      fail(where, `"${name}" is not a valid model name (letters, digits, . _ - : / @)`);
    const prior = seen.get(name);
    if (prior) fail(where, `"${name}" is already used by model "${prior}"`);
    seen.set(name, owner);
  };

  const routes: ModelRoute[] = Object.entries(models).map(([name, value]) => {
    const at = `models["${name}"]`;
    claim(name, at, name);
    const m = obj(value, at);
    onlyKeys(m, at, ['aliases', 'deployments', 'strategy']);
    const strategy = (m.strategy === undefined ? 'order' : str(m.strategy, `${at}.strategy`)) as Strategy;
    if (!STRATEGIES.includes(strategy)) fail(`${at}.strategy`, `must be one of ${STRATEGIES.join(', ')}`);
    const aliases = m.aliases === undefined ? [] : m.aliases;
    if (!Array.isArray(aliases)) fail(`${at}.aliases`, 'must be an array of names');
    (aliases as unknown[]).forEach((a, i) =>
      claim(str(a, `${at}.aliases[${i}]`), `${at}.aliases[${i}]`, name),
    );
    if (!Array.isArray(m.deployments) || m.deployments.length === 0)
      fail(`${at}.deployments`, 'must be a non-empty array');
    const deployments = (m.deployments as unknown[]).map((dv, i) => {
      const dat = `${at}.deployments[${i}]`;
      const d = obj(dv, dat);
      onlyKeys(d, dat, [
        'provider',
        'model',
        'base_url',
        'api_key_env',
        'pricing',
        'max_connections',
        'max_output_tokens',
        'options',
        'endpoints',
        'weight',
        'timeouts',
      ]);
      const provider = str(d.provider, `${dat}.provider`) as ProviderKind;
      if (!PROVIDER_KINDS.includes(provider))
        fail(`${dat}.provider`, `must be one of ${PROVIDER_KINDS.join(', ')}`);

      const upstreamModel =
        d.model === undefined && provider === 'mock' ? name : str(d.model, `${dat}.model`);

      let baseUrl = '';
      if (provider !== 'mock') {
        const raw =
          d.base_url === undefined && provider === 'anthropic'
            ? ANTHROPIC_BASE
            : str(d.base_url, `${dat}.base_url`);
        let url: URL;
        try {
          url = new URL(raw);
        } catch {
          return fail(`${dat}.base_url`, `"${raw}" is not a URL`);
        }
        if (url.protocol !== 'http:' && url.protocol !== 'https:')
          fail(`${dat}.base_url`, 'must be an http:// or https:// URL');
        if (url.search || url.hash || url.username || url.password)
          fail(`${dat}.base_url`, 'must not carry a query, fragment or credentials');
        baseUrl = raw.replace(/\/+$/, '');
      }

      let apiKey: string | undefined;
      if (d.api_key_env !== undefined) {
        const envName = str(d.api_key_env, `${dat}.api_key_env`);
        if (!ENV_NAME.test(envName))
          fail(
            `${dat}.api_key_env`,
            'must be the NAME of an environment variable (the secret never goes in this file)',
          );
        apiKey = readSecret(envName);
        if (!apiKey) fail(`${dat}.api_key_env`, `names ${envName}, which is not set`);
      }

      let pricing: Pricing = { inputPerMillion: 0, outputPerMillion: 0 };
      if (d.pricing !== undefined || provider !== 'mock') {
        const p = obj(d.pricing, `${dat}.pricing`);
        onlyKeys(p, `${dat}.pricing`, [
          'input_per_million',
          'output_per_million',
          'cache_write_per_million',
          'cache_read_per_million',
          'embedding_per_million',
        ]);
        pricing = {
          inputPerMillion: num(p.input_per_million, `${dat}.pricing.input_per_million`),
          outputPerMillion: num(p.output_per_million, `${dat}.pricing.output_per_million`),
          ...(p.embedding_per_million === undefined
            ? {}
            : { embeddingPerMillion: num(p.embedding_per_million, `${dat}.pricing.embedding_per_million`) }),
        };
        if (p.cache_write_per_million !== undefined)
          pricing.cacheWritePerMillion = num(
            p.cache_write_per_million,
            `${dat}.pricing.cache_write_per_million`,
          );
        if (p.cache_read_per_million !== undefined)
          pricing.cacheReadPerMillion = num(
            p.cache_read_per_million,
            `${dat}.pricing.cache_read_per_million`,
          );
      }

      const maxConnections =
        d.max_connections === undefined
          ? DEFAULT_MAX_CONNECTIONS
          : int(d.max_connections, `${dat}.max_connections`, 1);

      const weight = d.weight === undefined ? 1 : num(d.weight, `${dat}.weight`);
      const timeouts: TimeoutOverrides = {};
      if (d.timeouts !== undefined) {
        const t = obj(d.timeouts, `${dat}.timeouts`);
        const fields = {
          connect_ms: 'connectMs',
          stream_first_byte_ms: 'firstByteMs',
          stream_idle_ms: 'idleMs',
          total_ms: 'totalMs',
        } as const;
        onlyKeys(t, `${dat}.timeouts`, Object.keys(fields));
        for (const [field, key] of Object.entries(fields))
          if (t[field] !== undefined) timeouts[key] = int(t[field], `${dat}.timeouts.${field}`, 1);
      }
      const maxOutputTokens =
        d.max_output_tokens === undefined ? null : int(d.max_output_tokens, `${dat}.max_output_tokens`, 1);
      if (maxOutputTokens !== null && maxOutputTokens > MAX_COMPLETION_TOKENS)
        fail(`${dat}.max_output_tokens`, `must be at most ${MAX_COMPLETION_TOKENS}`);

      let mock: MockOptions | undefined;
      let anthropic: AnthropicOptions | undefined;
      const o = d.options === undefined ? {} : obj(d.options, `${dat}.options`);
      if (provider === 'mock') {
        onlyKeys(o, `${dat}.options`, [
          'reply',
          'latency_ms',
          'chunk_delay_ms',
          'prompt_tokens',
          'completion_tokens',
        ]);
        mock = {
          reply: o.reply === undefined ? undefined : str(o.reply, `${dat}.options.reply`),
          latencyMs: o.latency_ms === undefined ? 0 : int(o.latency_ms, `${dat}.options.latency_ms`, 0),
          chunkDelayMs:
            o.chunk_delay_ms === undefined ? 0 : int(o.chunk_delay_ms, `${dat}.options.chunk_delay_ms`, 0),
          promptTokens:
            o.prompt_tokens === undefined
              ? undefined
              : int(o.prompt_tokens, `${dat}.options.prompt_tokens`, 0),
          completionTokens:
            o.completion_tokens === undefined
              ? undefined
              : int(o.completion_tokens, `${dat}.options.completion_tokens`, 0),
        };
      } else if (provider === 'anthropic') {
        onlyKeys(o, `${dat}.options`, ['anthropic_version']);
        anthropic = {
          version:
            o.anthropic_version === undefined
              ? '2023-06-01'
              : str(o.anthropic_version, `${dat}.options.anthropic_version`),
        };
      } else {
        onlyKeys(o, `${dat}.options`, []);
      }

      let endpoints: Endpoint[] | undefined;
      if (d.endpoints !== undefined) {
        const can = PROVIDER_ENDPOINTS[provider];
        if (!Array.isArray(d.endpoints) || d.endpoints.length === 0)
          fail(`${dat}.endpoints`, `must be a non-empty array of: ${can.join(', ')}`);
        endpoints = (d.endpoints as unknown[]).map((e, j) =>
          can.includes(e as Endpoint)
            ? (e as Endpoint)
            : fail(
                `${dat}.endpoints[${j}]`,
                `must be one of ${can.join(', ')} (what the ${provider} provider serves)`,
              ),
        );
      }

      return new Deployment(
        `${name}#${i}`,
        provider,
        upstreamModel,
        baseUrl,
        pricing,
        maxConnections,
        mock,
        anthropic,
        apiKey,
        maxOutputTokens,
        endpoints,
        { weight, timeouts },
      );
    });
    if (strategy === 'weighted' && !deployments.some((d) => d.routing.weight > 0))
      fail(`${at}.deployments`, 'must give at least one deployment a weight above 0 (strategy weighted)');
    // A reservation prices the whole prompt at the dearest prompt rate (a cache write may cost more).
    const maxPricing: Pricing = {
      inputPerMillion: Math.max(
        ...deployments.map((d) => Math.max(d.pricing.inputPerMillion, d.pricing.cacheWritePerMillion ?? 0)),
      ),
      outputPerMillion: Math.max(...deployments.map((d) => d.pricing.outputPerMillion)),
    };
    const caps = deployments.flatMap((d) => (d.maxOutputTokens === null ? [] : [d.maxOutputTokens]));
    const maxOutputTokens = caps.length ? Math.min(...caps) : null;
    return { name, aliases: aliases as string[], deployments, strategy, maxPricing, maxOutputTokens };
  });
  return new RoutingTable(routes, source);
}
