import { CompletionAllowance, completionMicros, LevelUsage, ReserveLevel } from './quota-store';

export type AllowanceOutcome =
  | { ok: true; granted: number; tokens: number; costMicros: number }
  | { ok: false; reason: 'tokens' | 'budget'; levelIndex: number; limit: number }
  | { ok: false; reason: 'tpm'; windowIndex: number; limit: number };

/** A tokens-per-minute window as the allowance sees it: its limit and the tokens it holds now. */
export interface WindowRoom {
  limit: number;
  used: number;
}

/**
 * The allowance rule (README "Quotas"), for the in-process store; the Redis RESERVE script
 * is the same steps in Lua. Levels are checked in order: the first where the fixed part
 * (prompt) alone does not fit refuses; otherwise the grant is the least room per choice
 * over every level, in tokens and in spend, capped at `wanted`; below min(wanted, min)
 * the level that left the least room refuses. Tokens-per-minute windows come after the
 * levels and limit the grant in tokens the same way (a quota refusal is named first).
 */
export function allowance(
  levels: ReserveLevel[],
  usage: LevelUsage[],
  tokens: number,
  costMicros: number,
  completion: CompletionAllowance | undefined,
  windows: WindowRoom[] = [],
): AllowanceOutcome {
  const want = completion?.wanted ?? 0;
  const n = completion?.choices ?? 1;
  const ppt = completion?.microsPerToken ?? 0;
  let g = want;
  let limiting:
    | { reason: 'tokens' | 'budget'; levelIndex: number; limit: number }
    | { reason: 'tpm'; windowIndex: number; limit: number }
    | null = null;
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.tokenLimit !== null) {
      const room = l.tokenLimit - usage[i].tokens - tokens;
      if (room < 0) return { ok: false, reason: 'tokens', levelIndex: i, limit: l.tokenLimit };
      const gt = Math.floor(room / n);
      if (gt < g) {
        g = gt;
        limiting = { reason: 'tokens', levelIndex: i, limit: l.tokenLimit };
      }
    }
    if (l.spendLimitMicros !== null) {
      const room = l.spendLimitMicros - usage[i].spendMicros - costMicros;
      if (room < 0) return { ok: false, reason: 'budget', levelIndex: i, limit: l.spendLimitMicros };
      if (ppt > 0 && completionMicros(n * g, ppt) > room) {
        let gs = Math.min(g, Math.floor(room / (n * ppt)));
        while (gs > 0 && completionMicros(n * gs, ppt) > room) gs--;
        while (gs < g && completionMicros(n * (gs + 1), ppt) <= room) gs++;
        g = gs;
        limiting = { reason: 'budget', levelIndex: i, limit: l.spendLimitMicros };
      }
    }
  }
  for (let j = 0; j < windows.length; j++) {
    const room = windows[j].limit - windows[j].used - tokens;
    if (room < 0) return { ok: false, reason: 'tpm', windowIndex: j, limit: windows[j].limit };
    const gt = Math.floor(room / n);
    if (gt < g) {
      g = gt;
      limiting = { reason: 'tpm', windowIndex: j, limit: windows[j].limit };
    }
  }
  if (g < Math.min(want, completion?.min ?? 0) && limiting) return { ok: false, ...limiting };
  return {
    ok: true,
    granted: g,
    tokens: tokens + n * g,
    costMicros: costMicros + completionMicros(n * g, ppt),
  };
}
