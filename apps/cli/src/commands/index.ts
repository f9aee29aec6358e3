import { AuditExportCommand } from './audit-export.command';
import { AssignOwnerCommand } from './assign-owner.command';
import { BackfillReportCommand } from './backfill-report.command';
import { DbMigrateCommand } from './db-migrate.command';
import { KeysCreateCommand } from './keys-create.command';
import { KeysListCommand } from './keys-list.command';
import { QuotaReconcileCommand } from './quota-reconcile.command';
import { TenantsCreateCommand, TenantsListCommand } from './tenants.commands';
import { UsageCommand } from './usage.command';
import { UsersCreateCommand } from './users-create.command';

/** Every command, in the order --help lists them. */
export const COMMANDS = [
  BackfillReportCommand,
  AssignOwnerCommand,
  KeysCreateCommand,
  KeysListCommand,
  TenantsCreateCommand,
  TenantsListCommand,
  UsersCreateCommand,
  QuotaReconcileCommand,
  UsageCommand,
  AuditExportCommand,
  DbMigrateCommand,
];
