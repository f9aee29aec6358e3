import { ValidateIf } from 'class-validator';

/**
 * The field may be left out, but when present it is validated, `null` included. Unlike
 * `@IsOptional()` (which skips null too), so a PATCH cannot write null into a NOT NULL
 * column (a 500 from PostgreSQL, found by the reliability suite's bad-input corpus).
 * For fields where null means something (unlimited, no expiry), keep `@IsOptional()`.
 */
export const IsOmittable = () => ValidateIf((_object: object, value: unknown) => value !== undefined);
