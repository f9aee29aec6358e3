import { DataSource } from 'typeorm';

/**
 * The catalog of the public schema, one line per column, constraint and index, in
 * PostgreSQL's own normalized spelling (format_type, pg_get_constraintdef, pg_get_indexdef).
 */
export async function catalog(ds: DataSource, skipIndexes: string[] = []): Promise<string[]> {
  const rows: { line: string }[] = await ds.query(
    `SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
            || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
            || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS line
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'
       JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'migrations'
     UNION ALL
     SELECT c.relname || ' CONSTRAINT ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
       FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
      WHERE c.relname <> 'migrations'
     UNION ALL
     SELECT 'INDEX ' || indexdef FROM pg_indexes
      WHERE schemaname = 'public' AND tablename <> 'migrations' AND NOT indexname = ANY($1)
        AND indexname NOT IN (SELECT conname FROM pg_constraint)
     ORDER BY 1`,
    [skipIndexes],
  );
  // TypeORM writes a numeric default as a quoted literal ('0'::numeric), a migration as 0: same value.
  return rows.map((r) => r.line.replace(/ DEFAULT '(-?[0-9.]+)'::(numeric|bigint|integer)$/, ' DEFAULT $1'));
}
