import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Whether a file under `root`'s apps/ or libs/, or a build setting, changed after `builtMs`. */
export function sourcesChangedSince(root: string, builtMs: number): boolean {
  const newer = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((e) => {
      const p = join(dir, e.name);
      if (e.isDirectory()) return e.name !== 'node_modules' && newer(p);
      return statSync(p).mtimeMs > builtMs;
    });
  const settings = ['tsconfig.json', 'tsconfig.build.json', 'nest-cli.json', 'package-lock.json'];
  return (
    settings.some((f) => existsSync(join(root, f)) && statSync(join(root, f)).mtimeMs > builtMs) ||
    newer(join(root, 'apps')) ||
    newer(join(root, 'libs'))
  );
}
