/**
 * `npm run test:reliability`: the reliability and security proof (issue 9), outside `npm test`.
 * Reuses the e2e project of jest.config.js (swc transform, ESM allow-list, @app mappers) and its
 * PostgreSQL/Redis global setup; the reporter writes docs/RELIABILITY.md from the run's figures.
 */
const { resolve } = require('node:path');
const base = require('../../jest.config.js');
const e2e = base.projects.find((p) => p.displayName === 'e2e');

module.exports = {
  ...e2e,
  displayName: 'reliability',
  rootDir: resolve(__dirname, '../..'),
  testMatch: ['<rootDir>/test/reliability/**/*.rel-spec.ts'],
  globalSetup: '<rootDir>/test/reliability/global-setup.ts',
  globalTeardown: '<rootDir>/test/harness/global-teardown.ts',
  testTimeout: 120000,
  reporters: ['default', '<rootDir>/test/reliability/reporter.js'],
};
