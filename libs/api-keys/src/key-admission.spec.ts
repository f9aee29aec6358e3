import type { IncomingHttpHeaders } from 'node:http';
import { ApiKeyBearerStrategy, ApiKeyHeaderStrategy } from './api-key.strategies';
import { presentedKey } from './key-admission';
import type { KeyAuthService } from './key-auth.service';

type Verdict = { key: string } | 'none';

/**
 * What ApiKeyGuard's passport strategies make of the headers: the key the first one that
 * does not `fail` hands to KeyAuthService, or none (passport's 401 missing_api_key).
 */
async function throughPassport(headers: IncomingHttpHeaders): Promise<Verdict> {
  let seen: string | undefined;
  const keys = {
    authenticate: (key: string) => {
      seen = key;
      return Promise.resolve({});
    },
  } as unknown as KeyAuthService;
  for (const strategy of [new ApiKeyHeaderStrategy(keys), new ApiKeyBearerStrategy(keys)]) {
    const outcome = await new Promise<'fail' | 'done'>((resolve) => {
      const s = strategy as unknown as Record<string, (...a: unknown[]) => void>;
      s.fail = () => resolve('fail');
      s.success = () => resolve('done');
      s.error = () => resolve('done');
      s.authenticate({ headers }, {});
    });
    if (outcome === 'done') return { key: seen! };
  }
  return 'none';
}

const direct = (headers: IncomingHttpHeaders): Verdict => {
  const key = presentedKey(headers);
  return key === undefined ? 'none' : { key };
};

describe("presentedKey (the hot path) reads the key as the guard's passport strategies do", () => {
  const k = 'sk-abcdefghijklmnopqrstuvwxyz012345';
  const cases: [string, IncomingHttpHeaders][] = [
    ['X-API-Key', { 'x-api-key': k }],
    ['Bearer', { authorization: `Bearer ${k}` }],
    ['both: X-API-Key decides', { 'x-api-key': k, authorization: 'Bearer sk-other0123456789abcdef' }],
    ['empty X-API-Key: Bearer', { 'x-api-key': '', authorization: `Bearer ${k}` }],
    ['spaces around the key', { 'x-api-key': `  ${k} ` }],
    ['Bearer with extra spaces', { authorization: `Bearer   ${k}` }],
    ['lower-case bearer', { authorization: `bearer ${k}` }],
    ['Basic', { authorization: 'Basic abc' }],
    ['Bearer alone', { authorization: 'Bearer' }],
    ['Bearer and a space', { authorization: 'Bearer ' }],
    ['nothing', {}],
    ['X-API-Key of spaces', { 'x-api-key': '   ' }],
  ];
  it.each(cases)('%s', async (_name, headers) => {
    expect(direct(headers)).toEqual(await throughPassport(headers));
  });
});
