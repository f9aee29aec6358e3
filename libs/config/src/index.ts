export { AppConfig, LOG_LEVELS, MAX_COMPLETION_TOKENS } from './app-config';
export type { LogLevel } from './app-config';
export { ConfigError, loadConfig } from './load-config';
export { ConfigModule } from './config.module';
