// the libs' barrels import each other: load them in the app's order first
import '@app/observability';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { UpdateUserDto } from './user.dto';

const invalid = (plain: object) =>
  validateSync(plainToInstance(UpdateUserDto, plain))
    .map((e) => e.property)
    .sort();

describe('UpdateUserDto', () => {
  it('refuses null for NOT NULL fields (a 500 from PostgreSQL or bcrypt before); null still clears limits', () => {
    expect(invalid({ password: null, role: null, status: null, quota_period: null })).toEqual([
      'password',
      'quota_period',
      'role',
      'status',
    ]);
    expect(invalid({ quota_limit: null, max_budget: null, name: 'x' })).toEqual([]);
  });
});
