import { join } from 'node:path';

/**
 * Where every TypeORM entity lives: `libs/<lib>/src/**\/<name>.entity.ts`. The TypeORM CLI
 * (ormconfig.ts) and the schema drift test load entities from this glob, so an entity
 * outside it is invisible to `migration:generate` (README "Migrations").
 */
export function entityGlob(root: string, ext: 'ts' | 'js' = 'ts'): string {
  return join(root, 'libs', '*', 'src', '**', `*.entity.${ext}`);
}
