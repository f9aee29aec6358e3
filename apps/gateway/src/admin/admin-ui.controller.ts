import { Controller, Get, Header, Param, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError } from '@app/observability';
import { Public } from '@app/tenancy';

/**
 * Only self: no inline script or style, no other origin. The page builds its DOM with
 * textContent and createElementNS, so it needs neither 'unsafe-inline' nor 'unsafe-eval'.
 */
export const ADMIN_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The files of public/, read once: a fixed list, so no request path ever reaches the file system. */
export const ADMIN_FILES = [
  'index.html',
  'admin.css',
  'admin.js',
  'api.js',
  'dom.js',
  'chart.js',
  'audit.js',
  'users.js',
  'tenants.js',
  'usage.js',
  'favicon.svg',
];

function load(dir: string): Map<string, { body: Buffer; type: string }> {
  return new Map(
    ADMIN_FILES.map((f) => [
      f,
      {
        body: readFileSync(join(dir, f)),
        type: TYPES[f.slice(f.lastIndexOf('.'))] ?? 'application/octet-stream',
      },
    ]),
  );
}

/**
 * The admin page (README "Admin page"): static HTML/CSS/JS modules that call the admin
 * REST API with the JWT from /auth/login. Public: the page itself holds no data.
 */
@ApiExcludeController()
@Public()
@Controller('admin')
export class AdminUiController {
  // nest-cli.json copies public/ next to the compiled controller; jest runs it from source.
  private readonly files = load(join(__dirname, 'public'));

  @Get()
  @Header('Cache-Control', 'no-cache')
  index(@Res() res: Response): void {
    this.send(res, 'index.html');
  }

  @Get(':file')
  @Header('Cache-Control', 'no-cache')
  asset(@Param('file') file: string, @Res() res: Response): void {
    this.send(res, file);
  }

  private send(res: Response, name: string): void {
    const f = this.files.get(name);
    if (!f) throw ApiError.notFound(`No admin page file ${name}`, 'not_found');
    res
      .status(200)
      .set({
        'Content-Type': f.type,
        'Content-Security-Policy': ADMIN_CSP,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
        'X-Frame-Options': 'DENY',
      })
      .send(f.body);
  }
}
