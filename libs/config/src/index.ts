export { AppConfig, LOG_LEVELS, MAX_COMPLETION_TOKENS, parseHostPorts } from './app-config';
export type { HostPort, LogLevel, RedisTarget } from './app-config';
export { ConfigError, loadConfig } from './load-config';
export { ConfigModule } from './config.module';
