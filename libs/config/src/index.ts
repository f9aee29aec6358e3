export { AppConfig, LOG_LEVELS } from './app-config';
export type { LogLevel } from './app-config';
export { ConfigError, loadConfig } from './load-config';
export { ConfigModule } from './config.module';
