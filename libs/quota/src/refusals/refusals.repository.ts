import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

export interface RefusalDayCount {
  tenantId: string;
  day: string;
  reason: string;
  count: number;
}

/** refusal_counts: added to in batches (any number of instances), read per tenant and day range. */
@Injectable()
export class RefusalsRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * Adds the counts in one statement. A tenant deleted meanwhile would fail the batch on its
   * foreign key: its rows are left out instead (the join).
   */
  async add(rows: RefusalDayCount[]): Promise<void> {
    if (!rows.length) return;
    await this.db.query(
      `INSERT INTO refusal_counts (tenant_id, day, reason, count)
       SELECT r.tenant_id, r.day, r.reason, r.count
         FROM unnest($1::uuid[], $2::date[], $3::varchar[], $4::bigint[]) AS r(tenant_id, day, reason, count)
         JOIN tenants t ON t.id = r.tenant_id
       ON CONFLICT (tenant_id, day, reason) DO UPDATE SET count = refusal_counts.count + EXCLUDED.count`,
      [
        rows.map((r) => r.tenantId),
        rows.map((r) => r.day),
        rows.map((r) => r.reason),
        rows.map((r) => r.count),
      ],
    );
  }

  /** The tenant's counts per day and reason, days `fromDay` to `toDay` included, newest day first. */
  async report(tenantId: string, fromDay: string, toDay: string): Promise<RefusalDayCount[]> {
    const rows = (await this.db.query(
      `SELECT to_char(day, 'YYYY-MM-DD') AS day, reason, count::text AS count
         FROM refusal_counts
        WHERE tenant_id = $1 AND day >= $2::date AND day <= $3::date
        ORDER BY day DESC, count DESC, reason`,
      [tenantId, fromDay, toDay],
    )) as { day: string; reason: string; count: string }[];
    return rows.map((r) => ({ tenantId, day: r.day, reason: r.reason, count: Number(r.count) }));
  }
}
