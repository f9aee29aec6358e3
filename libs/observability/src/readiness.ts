import { Injectable } from '@nestjs/common';

/** A readiness check other libs contribute (Redis, ledger backlog). Throw = down. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<Record<string, unknown> | undefined>;
}

/** Libs register their checks here in onModuleInit; /health/ready runs them all. */
@Injectable()
export class ReadinessRegistry {
  readonly checks: ReadinessCheck[] = [];
  /** Set when graceful shutdown starts: /health/ready answers 503 from then on. */
  draining = false;

  register(check: ReadinessCheck): void {
    this.checks.push(check);
  }
}
