import { SetMetadata } from '@nestjs/common';

/**
 * Route access metadata read by the global admin guard (libs/auth). Kept here, the lowest
 * HTTP layer, so observability's own public routes (health, metrics) need nothing above it;
 * the admin and virtual-key decorators that write it live in libs/tenancy.
 */
export const AUTH_METADATA = 'gateway:auth';

/** No authentication (login, health, metrics, docs, the admin page's files). */
export const Public = () => SetMetadata(AUTH_METADATA, { mode: 'public' });
