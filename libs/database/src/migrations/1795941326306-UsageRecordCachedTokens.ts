import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Prompt-cache figures on each usage row (issue 16): of the prompt tokens, how many were
 * written to the provider's cache (Anthropic cache_creation_input_tokens) and how many were
 * read from it (cache_read_input_tokens, OpenAI prompt_tokens_details.cached_tokens). They
 * are priced at their own rates; prompt_tokens still counts them.
 */
export class UsageRecordCachedTokens1795941326306 implements MigrationInterface {
  name = 'UsageRecordCachedTokens1795941326306';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE usage_records
        ADD COLUMN cache_write_tokens integer NOT NULL DEFAULT 0,
        ADD COLUMN cache_read_tokens integer NOT NULL DEFAULT 0,
        ADD CONSTRAINT usage_records_cache_write_tokens_check CHECK (cache_write_tokens >= 0),
        ADD CONSTRAINT usage_records_cache_read_tokens_check CHECK (cache_read_tokens >= 0)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE usage_records
        DROP CONSTRAINT usage_records_cache_read_tokens_check,
        DROP CONSTRAINT usage_records_cache_write_tokens_check,
        DROP COLUMN cache_read_tokens,
        DROP COLUMN cache_write_tokens`);
  }
}
