import { plainToInstance } from 'class-transformer';
import { validateSync, ValidationError } from 'class-validator';
import { CliError } from './cli-error';

function messages(e: ValidationError, path: string): string[] {
  const here = Object.values(e.constraints ?? {});
  return here.concat(...(e.children ?? []).map((c) => messages(c, `${path}.${c.property}`)));
}

/**
 * The REST API's DTO rules for CLI input (same limits, same messages). `flags` maps DTO
 * properties to the option names the operator typed, for the error line.
 */
export function validated<T extends object>(
  type: new () => T,
  plain: Record<string, unknown>,
  flags: Record<string, string> = {},
): T {
  const dto = plainToInstance(type, plain);
  const errors = validateSync(dto, { whitelist: true, forbidNonWhitelisted: true });
  if (errors.length) {
    const e = errors[0];
    const flag = flags[e.property] ?? e.property;
    const message = messages(e, e.property)[0] ?? 'is invalid';
    throw new CliError(
      message.startsWith(`${e.property} `)
        ? `${flag} ${message.slice(e.property.length + 1)}`
        : `${flag}: ${message}`,
    );
  }
  return dto;
}
