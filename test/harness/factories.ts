import request from 'supertest';
import { randomBytes } from 'node:crypto';
import { MASTER_KEY } from './app';

export interface UserSession {
  id: string;
  email: string;
  password: string;
  token: string;
  role: 'admin' | 'member';
}

export interface TenantSession {
  tenantId: string;
  name: string;
  admin: UserSession;
}

const master = { Authorization: `Bearer ${MASTER_KEY}` };
const uniq = () => randomBytes(4).toString('hex');

/** Logs in and returns the JWT. */
export async function login(url: string, email: string, password: string): Promise<string> {
  const res = await request(url).post('/auth/login').send({ email, password }).expect(200);
  return res.body.access_token as string;
}

/** A user of `tenantId`, created with the master key, logged in. */
export async function createUser(
  url: string,
  tenantId: string,
  role: 'admin' | 'member' = 'member',
): Promise<UserSession> {
  const email = `${role}-${uniq()}@example.test`;
  const password = `pw-${uniq()}-${uniq()}`;
  const res = await request(url)
    .post('/api/v1/users')
    .set(master)
    .set('X-Tenant-ID', tenantId)
    .send({ email, password, role })
    .expect(201);
  return { id: res.body.id, email, password, role, token: await login(url, email, password) };
}

/** novu's UserSession idea: a tenant with an admin and their JWT in one call. */
export async function createTenantWithAdmin(url: string, name = `tenant-${uniq()}`): Promise<TenantSession> {
  const res = await request(url).post('/api/v1/tenants').set(master).send({ name }).expect(201);
  const admin = await createUser(url, res.body.id, 'admin');
  return { tenantId: res.body.id, name, admin: admin };
}

export const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
export const masterIn = (tenantId: string) => ({ ...master, 'X-Tenant-ID': tenantId });
export { master as masterHeaders };

/** `key` with its last character changed: the current format's checksum no longer holds. */
export const badChecksum = (key: string): string => key.slice(0, -1) + (key.at(-1) === 'a' ? 'b' : 'a');
