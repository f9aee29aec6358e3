import { Module } from '@nestjs/common';
import { AdminUiController } from './admin-ui.controller';

/** Serves /admin (static page; all data comes from the admin REST API). */
@Module({ controllers: [AdminUiController] })
export class AdminUiModule {}
