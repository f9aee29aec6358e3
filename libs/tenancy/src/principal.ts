export const ROLES = ['admin', 'member', 'system'] as const;
export type Role = (typeof ROLES)[number];

/**
 * Who is calling. `master`: the operator (MASTER_KEY), acting in the tenant named by
 * X-Tenant-ID when one is sent. `user`: a logged-in admin or member (JWT).
 * `api-key`: a virtual key on the completion routes (set by the api-keys guard).
 */
export interface Principal {
  kind: 'master' | 'user' | 'api-key';
  tenantId?: string;
  userId?: string | null;
  role?: Role;
  apiKeyId?: string;
}
