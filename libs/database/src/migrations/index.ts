import { CreateTenantsAndUsers1732000000000 } from './1732000000000-CreateTenantsAndUsers';

/**
 * Every migration, in order. The app and ormconfig.ts both use this list, so the
 * compiled gateway and the TypeORM CLI always agree.
 */
export const MIGRATIONS = [CreateTenantsAndUsers1732000000000];
