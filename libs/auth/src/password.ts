import * as bcrypt from 'bcrypt';
import { randomBytes } from 'node:crypto';

export function hashPassword(plain: string, rounds: number): Promise<string> {
  return bcrypt.hash(plain, rounds);
}

/**
 * Compares against `hash`, or against a decoy of the same cost when there is none, so
 * an unknown email costs what a wrong password costs.
 */
export class PasswordVerifier {
  private readonly decoy: string;

  constructor(
    rounds: number,
    /** Where the compare runs (BcryptGate.compare: a low-priority worker thread). */
    private readonly compare: (plain: string, hash: string) => Promise<boolean> = bcrypt.compare,
  ) {
    this.decoy = bcrypt.hashSync(randomBytes(16).toString('hex'), rounds);
  }

  async verify(plain: string, hash: string | null | undefined): Promise<boolean> {
    const ok = await this.compare(plain, hash ?? this.decoy);
    return ok && !!hash;
  }
}
