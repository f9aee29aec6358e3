import type { KeyDefaults } from '@app/auth';
import { ApiError } from '@app/observability';
import type { CreateApiKeyDto } from './dto/api-key.dto';

const NUMERIC = ['quota_limit', 'max_budget', 'rate_limit_rpm', 'rate_limit_tpm'] as const;
const DAY_MS = 86_400_000;

const above = (field: string, limit: unknown) =>
  ApiError.forbidden(
    `Members may only lower their key defaults: ${field} must be at most ${JSON.stringify(limit)} (set by an admin)`,
    'above_key_defaults',
  );

/**
 * The limits a new key gets from its owner's defaults (README "Virtual API keys", who may do what): a field the create
 * names none for takes the default. A member (`member = true`) may only ask for less: a lower
 * number, a subset of the models, an earlier expiry; never "unlimited" where a default is set,
 * never another reset period. Admins, the master key and the CLI may set anything.
 */
export function applyKeyDefaults(
  dto: CreateApiKeyDto,
  defaults: KeyDefaults | null,
  member: boolean,
  now = Date.now(),
): CreateApiKeyDto {
  const d = defaults ?? {};
  const out: CreateApiKeyDto = { ...dto };
  for (const f of NUMERIC) {
    const def = d[f] ?? null;
    if (dto[f] === undefined) {
      if (def !== null) out[f] = def;
      continue;
    }
    if (member && def !== null && (dto[f] === null || dto[f] > def)) throw above(f, def);
  }
  const hasQuotaDefault = d.quota_limit != null || d.max_budget != null;
  if (dto.quota_period === undefined) {
    if (d.quota_period && hasQuotaDefault) out.quota_period = d.quota_period;
  } else if (member && hasQuotaDefault && dto.quota_period !== (d.quota_period ?? 'none')) {
    throw above('quota_period', d.quota_period ?? 'none');
  }
  const models = d.allowed_models ?? null;
  if (dto.allowed_models === undefined) {
    if (models !== null) out.allowed_models = [...models];
  } else if (member && models !== null) {
    if (dto.allowed_models === null || dto.allowed_models.some((m) => !models.includes(m)))
      throw above('allowed_models', models);
  }
  const days = d.expires_in_days ?? null;
  const latest = days !== null ? new Date(now + days * DAY_MS) : null;
  if (dto.expires_at === undefined) {
    if (latest) out.expires_at = latest.toISOString();
  } else if (member && latest) {
    if (dto.expires_at === null || new Date(dto.expires_at).getTime() > latest.getTime())
      throw above('expires_at', latest.toISOString());
  }
  return out;
}
